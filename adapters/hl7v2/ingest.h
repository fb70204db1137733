// yilian::hl7v2::ingest — what happens to one received HL7 v2 message, from
// the unframed bytes to the ACK (DESIGN.md "Delivery contract"):
//
//   decode charset (MSH-18 / profile default) -> parse -> check MSH-4 (and
//   MSH-3) against the channel -> map through the profile -> reserve a receipt
//   and keep the raw bytes (store::ingest_store, durable) -> publish the events
//   (durable on the bus) -> ACK AA (enhanced mode: CA, then the application
//   ACK MSH-16 asks for) -> complete the receipt.
//
// Content errors (charset, parse, mapping, a facility not allowed on this
// channel) never drop the message: its bytes are kept and a DeadLetter event
// (topic yilian.deadletter.v1, keyed by hospital) says why; the sender gets
// AE (AR for a facility mismatch, as the profile documents) with an ERR
// segment. When the engine cannot accept now (store or bus overloaded or
// unavailable) the answer is AR and nothing is kept half-way: the receipt is
// abandoned (or left partial, so a resend publishes only what is missing).
//
// A resend (same hospital, MSH-4, MSH-10 and bytes) is answered again from the
// same deterministic outcome and publishes nothing new; the same MSH-10 with
// other bytes is AE 205 and is dead-lettered.
//
// Queries (MSH-9.1 QBP) that pass the channel checks are answered at once by
// the PIX path (pix.h: RSP^K23 for QBP^Q23, AR for other triggers) and leave
// no trace but metrics, a log line with ids and the on_pix_query hook: they
// are not events, so nothing is stored, published or dead-lettered.
//
// With an identity index (options.directory), every mapped event whose
// subject has identifiers but no enterprise id gets the one the index knows
// (stamp_enterprise_ids), and patient-topic events are keyed by it.
//
// One pipeline per hospital channel, shared by that channel's connections;
// on_frame may run concurrently for different connections (state is in the
// store and the bus; the pipeline itself is immutable after construction
// apart from atomics and metrics).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "adapters/hl7v2/listener.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/pix.h"
#include "engine/bus/bus.h"
#include "engine/config/config.h"
#include "engine/core/metrics.h"
#include "engine/store/ingest_store.h"

namespace yilian::hl7v2 {

struct ingest_options {
  std::string hospital;                      // the channel's hospital id
  const config::loaded_consortium* consortium = nullptr;
  const config::v1::HospitalProfile* profile = nullptr;  // required for a channel
  // The engine's own names for ACK MSH-3/MSH-4 when the message's MSH-5/6 are empty.
  std::string engine_application = "YILIAN";
  std::string engine_facility;               // default: the consortium id
  // The identity index: answers PIX queries and gives events their enterprise
  // patient id. Null: queries are answered AR (not available), events keep
  // what the mapping gave them. Not owned; outlives the pipeline.
  const identity::directory* directory = nullptr;
  // Called for every PIX query answered (audit); may be empty.
  pix_query_hook on_pix_query;
};

// Gives every event whose subject has identifiers and an empty
// enterprise_patient_id the enterprise id `directory` knows for the first of
// its identifiers that has one: MRNs (the record keys) first, then the others,
// each in PID-3 order. Events on the patient topic are then keyed by that
// enterprise id (per-patient order across hospitals); other keys and every
// event id stay as they are, so a resend still dedupes on its receipt.
void stamp_enterprise_ids(std::vector<mapped_event>& events, const identity::directory& directory);

// Counts what happened to messages, per hospital (see docs/operations.md).
struct ingest_metrics {
  explicit ingest_metrics(metrics::registry& registry);
  metrics::counter_family* messages;      // {hospital, type, ack}
  metrics::counter_family* dead_letters;  // {hospital, stage}
  metrics::counter_family* resends;       // {hospital}
  metrics::histogram_family* seconds;     // {hospital}: frame in -> ACK out
};

class ingest_pipeline final : public frame_handler {
 public:
  ingest_pipeline(ingest_options options, mapper map, bus::bus& bus, store::ingest_store& store,
                  std::shared_ptr<ingest_metrics> metrics);

  boost::asio::awaitable<std::vector<std::string>> on_frame(const connection_info& conn,
                                                           std::string payload) override;
  void on_framing_error(const connection_info& conn, const error& err, std::string_view skipped) override;

  // The same decision without a connection (for `yilian hl7` tooling and
  // tests): the reply payloads, UTF-8 encoded back to the sender's charset.
  boost::asio::awaitable<std::vector<std::string>> handle(std::string payload);

 private:
  struct decision;
  boost::asio::awaitable<std::vector<std::string>> process(std::string payload);
  std::string next_control_id();
  // Mapped batches kept between messages, so that a message's events are
  // built in an arena block an earlier message used (no new blocks once
  // warm). At most `max_idle_batches` wait here.
  std::unique_ptr<mapped_batch> take_batch();
  void give_back(std::unique_ptr<mapped_batch> batch);
  static constexpr std::size_t max_idle_batches = 128;

  ingest_options options_;
  mapper mapper_;
  bus::bus& bus_;
  store::ingest_store& store_;
  std::shared_ptr<ingest_metrics> metrics_;
  std::atomic<std::uint64_t> ack_counter_{0};
  std::string ack_prefix_;
  std::mutex batches_mu_;
  std::vector<std::unique_ptr<mapped_batch>> idle_batches_;
};

}  // namespace yilian::hl7v2
