// yilian::workflows::identity — the consortium identity index (engine/identity)
// run against the bus (DESIGN.md "Identity").
//
// The index decides deterministically given its input order, so its inputs go
// through one total order, the identity log (topic yilian.identity.v1: one
// partition, key "index", kept forever), and every engine instance folds that
// log into the same index:
//
//  feed    consumer group yilian-identity-feed, shared by the instances: copies
//          PatientRegistered / PatientUpdated / PatientIdentifiersMerged from
//          yilian.patient.v1 to the log, and the patient data of referrals and
//          bookings as PatientRecordObserved; its offsets are committed after
//          the copies are durable, so nothing acknowledged is left out.
//  view    every instance, from the start of the log: upsert, A40 merge, the
//          operators' PatientLinkCommands; answers the readers (REST, FHIR,
//          PIX, the HL7 adapter's enterprise ids) under a shared lock.
//  writer  the instance owning the log's partition in group yilian-identity:
//          announces every decision as PatientLinkChanged on
//          yilian.patient.v1 (key = the enterprise id) and commits the log
//          offset after those are durable. A crash repeats announcements
//          (same event ids), never skips one.
//
// Operators' commands are records on the log too; the instance that took the
// request answers from its own view once it has applied the command, and a
// command that no longer holds (a review already decided) is refused alike on
// every instance.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/bus/bus.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/core/metrics.h"
#include "engine/identity/directory.h"
#include "engine/identity/index.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::workflows::identity {

namespace idx = ::yilian::identity;
namespace ev = events::v1;

struct service_options {
  std::string log_topic = "yilian.identity.v1";
  std::string patient_topic = "yilian.patient.v1";
  // Topics whose patient data is observed (ReferralRequested.patient,
  // AppointmentChanged.patient); empty = none.
  std::vector<std::string> observed_topics = {"yilian.referral.v1", "yilian.booking.v1"};
  std::string group_prefix;  // Kafka group prefix ("" on the embedded log)
  std::string instance;      // this instance's id, for the view's own group; "" = random
  idx::identity_options index;
};

// The index options the consortium asks for: identifier systems by type from
// every hospital profile (RESIDENT_ID -> resident-ID systems, INSURANCE_CARD and
// HEALTH_CARD -> card systems; more than two card systems is an error) and
// the `identity` settings (thresholds, rules, holds, blocking caps).
result<service_options> options_from(const config::loaded_consortium& cfg);

// Enterprise ids as text: "YL" + 9 digits ("YL000000042"); a valid FHIR id.
std::string format_enterprise_id(idx::enterprise_id id);
std::optional<idx::enterprise_id> parse_enterprise_id(std::string_view text);

// One hospital record as the view holds it.
struct record_info {
  std::string hospital;
  std::vector<ev::Identifier> identifiers;  // with type and assigner
  ev::Demographics demographics;            // as its hospital last sent it (raw)
  std::string last_event_id;                // the event that last set it
  bool observed_only = false;               // known only from a referral / booking, not a registration feed
};

struct person_info {
  std::string enterprise_id;
  std::vector<record_info> records;  // oldest first
};

struct review_info {
  std::uint32_t id = 0;
  std::string state;                       // "open", "accepted", "rejected"
  record_info record;                      // the record queued
  std::string record_enterprise_id;        // the person it is now
  std::string candidate_enterprise_id;     // who it may be
  double score_bits = 0.0;
  std::string hold;                        // why it was not linked automatically ("" = score between bounds)
};

struct search_hit {
  person_info person;
  std::string verdict;      // "link", "review", "no_link"
  double score_bits = 0.0;
};

// What applying an operator's PatientLinkCommand did.
struct command_outcome {
  std::string command_id;
  std::optional<error> refused;   // not_found, conflict, validation_failed
  std::string enterprise_id;      // the person the record belongs to afterwards ("" if refused)
};

// The state every instance folds from the identity log. Read it through
// service::read(); never kept beyond the call.
class view {
 public:
  virtual ~view() = default;
  virtual const idx::identity_index& index() const = 0;
  virtual std::optional<person_info> person(std::string_view enterprise_id) const = 0;
  virtual std::optional<person_info> person_of(std::string_view system, std::string_view value) const = 0;
  // Persons that may be `query` (search by demographics and/or identifiers),
  // best first; nothing is stored.
  virtual std::vector<search_hit> search(const ev::Demographics& query, const std::vector<ev::Identifier>& identifiers,
                                         std::size_t limit) const = 0;
  virtual std::vector<review_info> reviews(bool open_only) const = 0;
  // The link decisions that touched the person (or persons merged into it),
  // oldest first, as announced on the bus.
  virtual std::vector<ev::PatientLinkChanged> history(std::string_view enterprise_id) const = 0;
  // Offset of the next identity-log record the view will apply.
  virtual std::int64_t applied_through() const = 0;
};

class service final : public idx::directory {
 public:
  service(bus::bus& b, service_options options, metrics::registry* registry = nullptr);
  ~service() override;
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  result<void> start();
  void stop();

  // Publishes an operator's command to the identity log and calls `done`
  // once, when this instance's view has applied it (or the command could not
  // be made durable). Same command_id twice: the first outcome.
  void submit(ev::PatientLinkCommand command, std::string actor_hospital,
              std::move_only_function<void(result<command_outcome>)> done);

  // `f(const view&)` under the shared lock.
  template <class F>
  auto read(F&& f) const {
    std::shared_lock lock(mu_);
    return std::forward<F>(f)(*view_);
  }

  // Whether the view has read the log up to where it was at start (readiness).
  bool caught_up() const;

  // idx::directory
  std::string enterprise_id_of(std::string_view system, std::string_view value) const override;
  std::optional<idx::cross_reference> cross_reference_of(std::string_view system, std::string_view value) const override;
  std::optional<idx::cross_reference> person(std::string_view enterprise_id) const override;
  std::vector<std::string> persons_holding(std::string_view system, std::string_view value) const override;

  class state;

 private:
  struct impl;
  mutable std::shared_mutex mu_;  // exclusive while the view applies log records
  std::unique_ptr<state> state_;
  const view* view_ = nullptr;    // state_, as its read-only face
  std::unique_ptr<impl> impl_;
};

}  // namespace yilian::workflows::identity
