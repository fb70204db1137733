// identity_index — the consortium identity index: which hospital records are the same person.
//
// Each hospital record (addressed by its record-key identifiers, e.g. the
// MRN as (system, value)) belongs to exactly one enterprise person. Feeding a
// record (upsert) either finds it by identifier (same pair, same person —
// always), or matches it against the records blocking proposes and then
// links it to a person (a rule or a score above the upper threshold), queues
// it for review against the best candidate (a new person until an operator
// decides), or makes it a new person. Operators accept or reject reviews,
// split a record out of a person, or move it; a hospital merges two of its
// own records (A40). Every link-changing decision is kept in history() with
// rule, score and actor.
//
// In memory only: the engine rebuilds it by replaying the patient topic, so
// decisions must be (and are) deterministic given the same input order.
// Records are packed (one heap block of text per record, fixed-size numeric
// fields); see docs/identity.md for bytes per patient.
//
// Not thread-safe: owned by one strand (the patient-topic consumer); readers
// go through that strand.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/named_type.h"
#include "engine/identity/blocking.h"
#include "engine/identity/chunked.h"
#include "engine/identity/demographics.h"
#include "engine/identity/matcher.h"

namespace yilian::identity {

// The enterprise (consortium-wide) person number. Sequential in input order,
// so a replay assigns the same numbers.
using enterprise_id = named_type<std::uint32_t, struct enterprise_id_tag>;

struct identity_options {
  // Identifier systems whose value is a resident ID (validated; links only
  // through the resident-ID rule or the score, never by itself).
  std::vector<std::string> resident_id_systems;
  // Person-level card systems (medical insurance, health card), "" = unused.
  std::array<std::string, max_card_systems> card_systems{};
  // Every other system is a record key: same (system, value), same record.
  match_options match;
  std::size_t max_block = 128;       // larger blocks are not used for candidates
  // A name_birth block larger than this is replaced by the record's finer
  // names_birth block (blocking.h), so candidates per record stay flat.
  std::size_t split_block = 2;
  std::size_t max_candidates = 256;  // records compared per incoming record, at most
};

enum class outcome : std::uint8_t {
  linked,      // joined an existing person (rule/score in the decision)
  review,      // a new person for now, queued for review against a candidate
  new_person,  // nobody close enough
  updated,     // known record (same identifier); demographics replaced
};
std::string_view to_string(outcome o) noexcept;

struct decision {
  enum outcome outcome = outcome::new_person;
  enterprise_id person;  // the person the record belongs to now
  rule by = rule::none;
  double score = 0.0;    // best candidate's score (bits); 0 when nothing was scored
  hold held = hold::none;
  std::optional<enterprise_id> candidate;  // review: who it may be
  std::optional<std::uint32_t> review_id;
  std::vector<enterprise_id> absorbed;     // persons folded into `person` (same identifier, A40)
  std::uint32_t compared = 0;              // candidate records scored
  std::uint32_t walked = 0;                // block postings read to find them
  bool resident_id_invalid = false;        // a resident ID was sent but failed validation (ignored)
};

// One scored candidate, for tracing and evaluation (never logged: it points
// at records, which the caller resolves to identifiers if it may).
struct candidate_trace {
  std::uint32_t record = 0;
  enterprise_id person;
  comparison c;
  pair_verdict verdict;
};

struct review_item {
  std::uint32_t id = 0;
  std::uint32_t record = 0;
  enterprise_id candidate;
  double score = 0.0;
  hold held = hold::none;  // why it was not linked automatically (none: score between the thresholds)
  enum class state : std::uint8_t { open, accepted, rejected } status = state::open;
};

enum class action : std::uint8_t { link, review_queued, review_accepted, review_rejected, split, move, a40_merge };
std::string_view to_string(action a) noexcept;

struct audit_entry {
  std::uint64_t seq = 0;
  enum action what = action::link;
  std::uint32_t record = 0;
  enterprise_id from;  // the person before (== to for review_queued/rejected)
  enterprise_id to;
  rule by = rule::none;
  float score = 0.0F;
  std::string actor;   // "yilian" for automatic decisions, else the operator's principal id
};

struct index_stats {
  std::size_t records = 0;
  std::size_t persons = 0;
  std::size_t block_keys = 0;
  std::size_t block_postings = 0;
  std::size_t memory_bytes = 0;  // estimate of what the index holds (not allocator overhead)
};

class identity_index {
 public:
  static constexpr std::string_view automatic = "yilian";

  explicit identity_index(identity_options opt);
  ~identity_index();
  identity_index(const identity_index&) = delete;
  identity_index& operator=(const identity_index&) = delete;

  // Adds or updates a hospital record. `trace`, when given, receives every
  // candidate scored.
  decision upsert(const source_record& r, std::vector<candidate_trace>* trace = nullptr);

  // Scores a record against the index without storing anything (search by
  // demographics). Best candidates first, at most `limit` persons.
  struct search_hit {
    enterprise_id person;
    pair_verdict verdict;
  };
  std::vector<search_hit> search(const source_record& r, std::size_t limit = 10) const;

  std::optional<enterprise_id> person_of(const identifier& id) const;
  // The persons whose records carry a resident ID or card (validated and
  // normalized like an incoming record's), oldest person first.
  std::vector<enterprise_id> persons_with(const identifier& id) const;
  std::optional<std::uint32_t> record_of(const identifier& id) const;
  // The records (hospital, key identifiers) of a person, oldest first.
  std::vector<std::uint32_t> records_of(enterprise_id p) const;
  std::string_view hospital_of(std::uint32_t record) const;
  std::vector<identifier> identifiers_of(std::uint32_t record) const;
  // A person id that was merged away resolves to the survivor.
  enterprise_id resolve(enterprise_id p) const;

  std::vector<review_item> open_reviews() const;
  // Every review ever queued, decided ones with their outcome, by id.
  const std::vector<review_item>& reviews() const noexcept { return reviews_; }
  result<decision> accept_review(std::uint32_t review_id, std::string_view actor);
  result<void> reject_review(std::uint32_t review_id, std::string_view actor);
  // Moves a record out of its person into a new one; the pair is remembered
  // so matching never proposes it again. Fails if the record is alone.
  result<enterprise_id> split(const identifier& record_key, std::string_view actor);
  // Moves a record into another person (an operator's manual link).
  result<void> move(const identifier& record_key, enterprise_id to, std::string_view actor);
  // A40: `obsolete` (MRG-1) is merged into `survivor` (PID-3), both records
  // of `hospital`. The obsolete identifiers then address the survivor record;
  // replaying the same merge is a no-op.
  result<decision> merge_within_domain(std::string_view hospital, const identifier& survivor,
                                       const identifier& obsolete, std::string_view actor);

  // The date resident-ID birth dates are checked against (none in the
  // future). Unset: today in UTC. A replayed log sets each record's own date,
  // so a replay decides exactly as the first pass did.
  void set_today(civil_date d) noexcept { today_ = d; }

  const chunked_vector<audit_entry>& history() const noexcept { return history_; }
  // Walks every record for memory_bytes: for metrics and logs, not per event.
  index_stats stats() const;
  // O(1): live persons and records.
  std::size_t persons() const noexcept { return live_persons_; }
  std::size_t records() const noexcept { return live_records_; }
  const identity_options& options() const noexcept { return opt_; }

 private:
  struct stored;
  struct person_slot {
    std::uint32_t head = 0xFFFFFFFFU;
    std::uint32_t size = 0;
    std::uint32_t merged_into = 0xFFFFFFFFU;
  };
  struct classified;
  struct match_result;

  classified classify(const source_record& r) const;
  match_result match(const features_view& q, std::uint16_t hospital, std::uint32_t self,
                     std::vector<candidate_trace>* trace) const;
  features_view view_of(std::uint32_t record) const;
  // f(system, value) for each key identifier of a live record, without copying.
  template <class F>
  void for_each_identifier(std::uint32_t record, F&& f) const;
  std::uint32_t store(const classified& c, std::uint16_t hospital, std::uint32_t person);
  void restore(std::uint32_t record, const classified& c);
  struct filed_keys;
  filed_keys keys_of(std::uint32_t record) const;
  void file(std::uint32_t record, const filed_keys& k, bool add);
  void index_record(std::uint32_t record, bool add);
  // restore() plus moving only the keys that changed.
  void refile(std::uint32_t record, const classified& c);
  void erase_record(std::uint32_t record);
  std::uint32_t new_person();
  void attach(std::uint32_t record, std::uint32_t person);
  void detach(std::uint32_t record);
  // Moves every record of `from` into `into`; `from` is marked merged.
  void merge_persons(std::uint32_t from, std::uint32_t into);
  std::uint32_t root(std::uint32_t person) const;
  bool do_not_link(std::uint32_t record, std::uint32_t person) const;
  std::uint16_t intern_system(std::string_view s);
  std::uint16_t intern_hospital(std::string_view s);
  std::optional<std::uint16_t> find_system(std::string_view s) const;
  void audit(action what, std::uint32_t record, std::uint32_t from, std::uint32_t to, rule by, double score,
             std::string_view actor);

  identity_options opt_;
  civil_date today_;
  chunked_vector<stored> records_;
  chunked_vector<person_slot> persons_;
  std::size_t live_records_ = 0, live_persons_ = 0;
  block_index blocks_;
  block_index ids_;  // key identifier hash -> records
  std::vector<std::string> systems_, hospitals_;
  std::unordered_map<std::string, std::uint16_t> system_ids_, hospital_ids_;
  std::unordered_multimap<std::uint32_t, std::uint32_t> do_not_link_;  // record -> person
  count_table name_counts_;  // name part hash -> records carrying it
  population_context frequencies_of(const features_view& q) const;
  std::vector<review_item> reviews_;
  std::unordered_multimap<std::uint32_t, std::uint32_t> reviews_of_record_;  // record -> review id
  chunked_vector<audit_entry> history_;
  std::uint64_t seq_ = 0;
};

}  // namespace yilian::identity
