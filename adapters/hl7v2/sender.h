// yilian::hl7v2::outbound_sender — delivers events to hospitals over MLLP
// (issue 3 item 5; DESIGN.md "Delivery contract": at-least-once with
// idempotency keys, ordered per destination, retried with backoff,
// dead-lettered after a bound, queue depth visible).
//
// What it reads. The outbound topic (yilian.outbound.v1) carries records whose
// key is the destination hospital id and whose value is a serialized
// yilian.events.v1.Envelope: the event to deliver, as a workflow produced it.
// The envelope's event_id is the idempotency key; it becomes MSH-10 of the
// rendered message, so a redelivery (after a crash, a restart, a timeout)
// carries the same control id and the receiver can deduplicate.
//
// Destinations. One destination per (hospital, outbound endpoint of kind
// MLLP) of every hospital profile. A destination delivers the records keyed
// with its hospital whose body type (the Envelope body message name, e.g.
// "ReportIssued") is in the endpoint's event_types, or all with "*";
// DeliveryAcknowledged and DeadLetter bodies are never delivered, whatever
// event_types says. Other records are skipped and committed. A value that is
// not an Envelope is dead-lettered (bad input is never dropped).
//
// Isolation. Each destination is its own consumer group,
// "[<group_prefix>-]yilian-outbound-<hospital>-<endpoint id>", with its own
// bus consumer polled on its own thread (bus polls block) and its own
// coroutine on its own strand that renders, sends and waits for the ACK. The
// poll thread reads ahead at most queue_capacity deliverable records into a
// bounded hand-off queue, so an unreachable hospital's backlog costs memory
// only up to that bound and never delays another destination. Each
// destination reads the whole outbound topic and filters on the key (the bus
// has no manual partition assignment): N destinations read every record N
// times, which is cheap next to one MLLP exchange.
//
// Order and at-least-once. One message in flight per destination; the next
// record is sent only after the current one was ACKed (AA/CA) or
// dead-lettered. Offsets are committed only then: per partition, the commit
// point is just below the oldest record still undelivered (skipped records
// ahead of it wait), so after a crash or a restart the record that was being
// sent is sent again, with the same MSH-10.
//
// Outcomes of one attempt (RetryPolicy of the endpoint: initial_backoff_ms,
// doubling to max_backoff_ms, max_attempts):
//   AA, CA                  delivered: commit, next record.
//   AR, CR, ACK timeout,    transient: wait the backoff and send the SAME
//   connection refused /    record again, forever (skipping it would break
//   closed / reset,         the order); the connection is re-opened as needed.
//   stale ACK (MSA-2 names another control id)
//   AE, CE, unreadable ACK  counted; some receivers answer AE for transient
//                           reasons (a record lock, a master file not loaded
//                           yet), so the same record is retried with backoff
//                           until max_attempts AE answers, then a DeadLetter is
//                           published and the destination goes on with the
//                           next record.
//   render / charset error  the event cannot be expressed in HL7 v2 for this
//                           destination: dead-lettered at once, no attempt.
// MSA-2 is compared with the MSH-10 sent; an empty MSA-2, or one the receiver
// cut to 20 characters or more (v2.5 ST length), is accepted.
//
// Dead letters go to yilian.deadletter.v1 keyed by the destination hospital:
// an Envelope (event_id = SHA-256 of "outbound|<hospital>/<endpoint>|<event
// id>", so a repeated dead-lettering deduplicates; causation_id = the original
// event id; the original correlation, never its subject) whose DeadLetter has
// stage "outbound", where "outbound:<hospital>/<endpoint id>", attempts,
// original_event_id, original_topic, control_id, message_type, error_code
// (validation_failed for AE/CE, parse_error for an unreadable ACK or value, the
// render error's code otherwise) and the reason (the receiver's ERR/MSA-3 text
// for AE). DeadLetter.raw does not copy the bytes: raw.uri is
// "event://<original topic>/<partition>/<offset>" (the original record stays on
// the bus, and re-rendering it gives the same message), raw.sha256 and
// size_bytes describe the record value. A dead letter that cannot be published
// (bus down) is retried with backoff; nothing is committed before it is
// durable.
//
// Character sets. The rendered UTF-8 message is converted to the destination
// profile's default_charset (MSH-18 says which); the ACK is decoded by its own
// MSH-18, else that charset. Timestamps are local to the destination profile's
// time_zone.
//
// Metrics (label destination = "<hospital>/<endpoint id>"; every series exists
// from start(), at zero):
//   yilian_outbound_queue_depth                  records for the destination not yet
//                                                delivered: read ahead and in flight
//                                                (exact) plus the unread part of the
//                                                destination's partition (end offset
//                                                minus what was read; this part also
//                                                counts other hospitals' records in the
//                                                same partition, and is refreshed every
//                                                lag_interval)
//   yilian_outbound_delivered_total              ACKed with AA/CA
//   yilian_outbound_retries_total                attempts after the first, all causes
//   yilian_outbound_dead_letters_total           records dead-lettered
//   yilian_outbound_last_success_timestamp_seconds  Unix time of the last AA/CA (0 = never)
// Logs (component "hl7v2.sender") carry destination, event_id, attempt,
// outcome, ack code and wait; never message content (a receiver's error text
// is logged redacted; it goes to the DeadLetter reason as the receiver wrote it).
//
// Ownership and threads: the sender owns its destinations; each destination
// owns one poll thread, one consumer and one MLLP client. start(), stop(),
// status() may be called from any thread; wait_stopped() is awaited on any
// executor. The bus, the consortium and the registry must outlive the sender.
// The destructor stops and joins the poll threads (without waiting for a
// coroutine whose io_context no longer runs).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "engine/bus/bus.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/core/metrics.h"
#include "engine/identity/directory.h"

namespace yilian::hl7v2 {

struct sender_options {
  // Prepended (with "-") to every destination's consumer group. The app passes
  // BusConfig.kafka.group_prefix on Kafka and "" on the embedded log.
  std::string group_prefix;
  // Topics; empty = the standard names (config::topic_name).
  std::string outbound_topic;
  std::string deadletter_topic;
  // Where a destination's group starts when it has no committed offset.
  // earliest: nothing published before the first start is missed.
  bus::start_from start = bus::start_from::earliest;
  // How long one bus poll waits; also bounds how late a delivered record's
  // commit is and how fast stop() is noticed by the poll thread.
  std::chrono::milliseconds poll_timeout{100};
  // Deliverable records read ahead per destination (the hand-off queue bound).
  std::size_t queue_capacity = 256;
  // How often a destination refreshes its partition end offsets for the
  // queue depth gauge.
  std::chrono::milliseconds lag_interval{1000};
  // MSH-12 of rendered messages (render_options::version).
  std::string version = "2.5";
  // MSH-3 and MSH-4 (empty MSH-4 = the consortium id).
  std::string sending_application = "YILIAN";
  std::string sending_facility;
  // Largest ACK accepted.
  std::size_t max_ack_bytes = 1u << 20;
  // Connect deadline; the ACK deadline is the endpoint's timeout_ms.
  std::chrono::milliseconds connect_timeout{5000};
  // Check the server certificate of TLS endpoints. Off only in tests.
  bool tls_verify = true;
  // The identity index (render_options::directory): PID-3 then carries the
  // destination's own identifiers of the patient. Not owned; may be null.
  const identity::directory* directory = nullptr;
};

// A snapshot of one destination for the console and tests.
struct destination_status {
  std::string hospital;
  std::string endpoint_id;
  std::string label;    // "<hospital>/<endpoint id>"
  std::string group;    // its consumer group
  std::string address;  // "host:port"
  bool connected = false;
  std::int64_t queue_depth = 0;
  std::uint64_t delivered = 0;
  std::uint64_t retries = 0;
  std::uint64_t dead_letters = 0;
  std::string current_event_id;  // being delivered; empty when idle
  std::uint32_t attempt = 0;     // of the current event (1 = first try)
  std::string last_outcome;      // "AA", "AR", "timeout", "unavailable", "dead-lettered", ...
  std::string last_error;        // error::describe() of the last failure (no patient data)
  std::int64_t last_success_unix_ms = 0;
};

class outbound_sender {
 public:
  // `executor` runs the destinations' coroutines (each on a strand of it).
  outbound_sender(boost::asio::any_io_executor executor, bus::bus& bus, const config::loaded_consortium& consortium,
                  sender_options options, metrics::registry& registry);
  ~outbound_sender();
  outbound_sender(const outbound_sender&) = delete;
  outbound_sender& operator=(const outbound_sender&) = delete;

  // Creates one destination per MLLP outbound endpoint of every profile,
  // subscribes their consumer groups and starts their threads and coroutines.
  // Errors: errc::config_error (an address that is not host:port, two
  // destinations with the same group name), the bus's subscribe errors. On
  // error nothing is left running. Calling it twice is errc::invalid_argument.
  result<void> start();

  // Asks every destination to stop: the exchange in flight is abandoned (its
  // record is not committed and is sent again after a restart, with the same
  // MSH-10), backoff waits end, polling stops. Idempotent; returns at once.
  void stop();

  // Completes when every destination has stopped and committed what it
  // delivered (after stop(); at once when never started).
  boost::asio::awaitable<void> wait_stopped();

  std::vector<destination_status> status() const;

  // "[<prefix>-]yilian-outbound-<hospital>-<endpoint id>".
  static std::string group_name(std::string_view prefix, std::string_view hospital, std::string_view endpoint_id);

  class destination;  // internal

 private:
  boost::asio::any_io_executor executor_;
  bus::bus& bus_;
  const config::loaded_consortium& consortium_;
  sender_options options_;
  metrics::registry& registry_;
  std::vector<std::shared_ptr<destination>> destinations_;
  std::atomic<bool> started_{false};
};

}  // namespace yilian::hl7v2
