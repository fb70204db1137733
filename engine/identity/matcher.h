// The matching core: a record's comparable features, how two records compare
// field by field (agreement levels), Fellegi–Sunter weights over those levels,
// the deterministic rules and guards, and EM estimation of the weights.
//
// Pure functions over values; the index (index.h) owns storage and blocking.
//
// Scoring: every field compares to one agreement level (0 = best) or
// "missing" (either side empty: contributes nothing). A level contributes
// log2(m/u): m = P(level | same person), u = P(level | different persons)
// over random pairs. The score is the sum (bits of evidence). Rules decide
// before the score when they apply; guards cap a decision at "review" when a
// wrong automatic merge would be likely (see decide()).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/identity/demographics.h"
#include "engine/identity/names.h"

namespace yilian::identity {

// At most this many person-level card systems (insurance, health card, ...).
inline constexpr std::size_t max_card_systems = 4;

enum class field : std::uint8_t {
  family,
  given,
  birth_date,
  sex,
  phone,
  resident_id,
  card,
  postcode,
  city,
  street,
  street_number,
  line2,
  province,
};
inline constexpr std::size_t field_count = 13;
inline constexpr std::size_t max_levels = 4;
std::string_view to_string(field f) noexcept;
// Number of agreement levels of a field (excluding "missing").
std::size_t level_count(field f) noexcept;

inline constexpr std::uint8_t missing_level = 0xFF;

// m and u per agreement level of every field.
struct field_weights {
  std::array<std::array<double, max_levels>, field_count> m{};
  std::array<std::array<double, max_levels>, field_count> u{};
  // log2(m/u), filled by finalize().
  std::array<std::array<double, max_levels>, field_count> w{};

  void finalize();
  // Configured defaults (docs/identity.md "Weights"): m from registration-desk
  // error rates, u from random pairs of a regional population.
  static field_weights defaults();
};

// A record reduced to what the comparators read. Views into storage owned by
// someone else (features below, or the index's packed records).
struct features_view {
  std::string_view family, given;
  std::uint32_t han_family = 0, han_given = 0;
  civil_date birth;
  enum sex sex = sex::unknown;
  std::string_view phone;        // normalize_phone()
  std::string_view resident_id;  // valid, normalized; empty if absent or invalid
  std::array<std::string_view, max_card_systems> cards{};  // normalize_card_number(), by card system
  std::string_view postcode, city, street, street_number, line2, province;  // folded
};

// Owning features of one incoming record.
struct features {
  normalized_name name;
  civil_date birth;
  enum sex sex = sex::unknown;
  std::string phone;
  std::string resident_id;
  bool resident_id_invalid = false;  // present but failed validation (never used)
  std::array<std::string, max_card_systems> cards{};
  std::string postcode, city, street, street_number, line2, province;

  features_view view() const noexcept;
};

// Builds the features of one record: names normalized, address folded,
// phone normalized, the resident ID validated (an invalid one is dropped and
// flagged, never compared), card numbers normalized. A missing birth date or
// sex is taken from a valid resident ID, which encodes both.
features make_features(const demographics& d, std::string_view resident_id_text,
                       const std::array<std::string_view, max_card_systems>& card_texts, civil_date today);

// Field comparison of two records.
struct comparison {
  std::array<std::uint8_t, field_count> level{};
  bool names_swapped = false;
  std::uint8_t level_of(field f) const noexcept { return level[static_cast<std::size_t>(f)]; }
  bool present(field f) const noexcept { return level_of(f) != missing_level; }
  bool operator==(const comparison&) const = default;
};

comparison compare(const features_view& a, const features_view& b) noexcept;

// Sum of log2(m/u) over present fields.
double score(const comparison& c, const field_weights& w) noexcept;

enum class rule : std::uint8_t {
  none,
  identifier,       // same (system, value): same person by definition
  resident_id,      // valid resident ID + name + birth date
  card,             // insurance / health card + name + birth date
  probabilistic,    // score at or above the upper threshold
  a40_merge,        // the hospital merged two of its own records
  operator_link,    // an operator linked or accepted a review
  operator_split,   // an operator split a record out of a person
};
std::string_view to_string(rule r) noexcept;

enum class verdict : std::uint8_t { link, review, no_link };
std::string_view to_string(verdict v) noexcept;

// Why a would-be automatic link was held for review (0 = not held).
enum class hold : std::uint8_t {
  none,
  conflicting_resident_id,  // both carry valid, different resident IDs
  name_disagrees,           // a name part present on both sides disagrees outright
  birth_date_disagrees,     // both known and unrelated, no identifier agrees
  same_domain,              // both records from one hospital: that is the hospital's A40 to make
  ambiguous,                // several persons would be linked: an operator picks
  given_name_similar,       // given name only similar and no identifier agrees (twins)
  uncorroborated,           // only name, birth date, sex and region agree: no identifier, phone or address
};
std::string_view to_string(hold h) noexcept;

struct match_options {
  // Scores (bits) for the two thresholds. With scale_with_population these
  // are floors: the thresholds in force are thresholds_for() the index size.
  double upper = 18.0;
  double lower = 8.0;
  // Population-aware thresholds. The weights' u are per random pair, so the
  // prior odds that an arriving record is one particular stored person are
  // about 1 : persons (times the odds, taken as 1:1, that the person is in
  // the index at all). Posterior log2-odds = score - log2(persons); a link
  // needs posterior odds of at least 2^link_margin (7: 128:1, P >= 0.992),
  // a review at least 2^review_margin (-3: 1:8). Without this a fixed
  // threshold that is safe at 5,000 patients links namesakes at 1,000,000.
  bool scale_with_population = true;
  double link_margin = 7.0;
  double review_margin = -3.0;
  // Deterministic rules (each can be switched off).
  bool rule_resident_id = true;
  bool rule_card = true;
  // Guards that cap an automatic link at review.
  bool hold_conflicting_resident_id = true;
  bool hold_name_disagrees = true;
  bool hold_birth_date_disagrees = true;
  bool hold_given_name_similar = true;
  // A score link needs evidence beyond name, birth date, sex and region: an
  // identifier, the phone, or the street address agreeing. Name and birth
  // date are not independent of other people's (张伟 born 1980-05-17 is
  // several people in a city), which the independence assumption behind the
  // score cannot see; corroboration from a household-level field can.
  bool hold_uncorroborated = true;
  // Two records of one hospital never auto-link: duplicates inside a domain
  // are the hospital's to merge (A40). Off for single-source deduplication.
  bool hold_same_domain = true;
  field_weights weights = field_weights::defaults();
};

// The verdict on one pair of records.
struct pair_verdict {
  verdict v = verdict::no_link;
  rule by = rule::none;
  hold held = hold::none;
  double score = 0.0;
};

// What the index knows about the population an incoming record is matched
// against. Value frequencies: the share of stored records carrying the
// incoming record's family name, given name and city (0 = unknown). The u of
// an exact agreement on a value is the chance a random record carries that
// value, so it is replaced by the observed share (term-frequency weighting,
// Winkler): agreement on 王/伟 or on the home district weighs less, on a
// rare name more. `persons`: the index's live persons, for the
// population-aware thresholds (0 = use the configured thresholds).
struct population_context {
  double family = 0.0;
  double given = 0.0;
  double city = 0.0;  // a regional consortium's patients mostly live in a few districts
  double persons = 0.0;
};
using name_frequencies = population_context;

struct thresholds {
  double upper = 0.0;
  double lower = 0.0;
};
// The thresholds in force for an index of `persons` persons:
// max(configured, log2(persons) + margin) when scaling is on.
thresholds thresholds_for(const match_options& opt, double persons) noexcept;

// Whether anything beyond name, birth date, sex and region agrees: a valid
// resident ID, a card number (exact or one keystroke off: a namesake does
// not carry a number one edit from yours), the phone, a street address line
// (exact or a typo), or street number and postcode together.
bool corroborated(const comparison& c) noexcept;

// Rules, then score against thresholds, then guards.
pair_verdict decide(const features_view& a, const features_view& b, const comparison& c, bool same_domain,
                    const match_options& opt, const population_context& ctx = {}) noexcept;

// Whether the names agree well enough for a deterministic rule: both parts
// at least "similar" (Jaro-Winkler >= 0.85 after swap alignment), or one part
// missing and the other at least "close".
bool names_agree(const comparison& c) noexcept;

// Unsupervised estimation of m, u and the match share from comparison
// vectors of candidate pairs (EM, Winkler 1988 / Jaro 1989), starting from
// `start`. Distinct vectors are counted once with multiplicity, so cost is
// O(iterations * distinct vectors). u is estimated over candidate pairs,
// which blocking has already enriched for agreement on the blocked fields.
struct em_result {
  field_weights weights;
  double match_share = 0.0;
  int iterations = 0;
};
em_result estimate_weights(std::span<const comparison> pairs, const field_weights& start, int max_iterations = 100);

}  // namespace yilian::identity
