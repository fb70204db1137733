// yilian::webhook::webhook_sender — delivers events over HTTPS webhooks: to
// hospitals (profile outbound endpoints of kind WEBHOOK) and to the
// consortium's patient notification channel (Consortium.patient_notifications,
// an SMS / WeChat gateway). Issue 5 item 3; DESIGN.md "Delivery contract":
// at-least-once with idempotency keys, ordered per destination, retried with
// backoff, dead-lettered after a bound, queue depth visible. The MLLP sender
// (adapters/hl7v2/sender.h) keeps the same contract for MLLP endpoints; this
// one mirrors its structure, its consumer groups and its metrics.
//
// What it reads. The outbound topic (yilian.outbound.v1): records keyed by the
// destination hospital id, or "@patients" for the patient channel, whose value
// is a serialized yilian.events.v1.Envelope, the event to deliver. Its
// event_id is the idempotency key: every attempt, and every redelivery after a
// crash or restart, carries it as Idempotency-Key (and X-Yilian-Event-Id).
//
// Destinations. One per (hospital, outbound endpoint of kind WEBHOOK) of every
// profile, taking the records keyed with the hospital id; plus one for
// patient_notifications.endpoint when configured, taking the records keyed
// "@patients". A destination delivers the records whose body type (the
// Envelope body message name, e.g. "ReportIssued") is in its endpoint's
// event_types ("*" = all); DeliveryAcknowledged and DeadLetter bodies are never
// delivered, whatever event_types says. Other records are skipped and
// committed. A value that is not an Envelope is dead-lettered.
//
// What is POSTed (docs/webhooks.md; signing.h for the headers and the exact
// signed string):
//   hospital   the Envelope as protobuf JSON (canonical proto3 mapping:
//              lowerCamelCase names, enums by name, 64-bit integers as strings,
//              timestamps RFC 3339), the same JSON `yilian events publish`
//              accepts.
//   @patients  the notification of notification.h: the template chosen by
//              event type and status, its text with the placeholders filled
//              in, the patient's identifiers and contact points, the hospital
//              and the event's ids. The patient's data is only ever in the
//              body: logs, metrics, statuses and dead letters carry event ids
//              and the destination.
//
// Isolation. Each destination is its own consumer group,
// "[<group_prefix>-]yilian-outbound-<hospital>-<endpoint id>" ("patients" in
// place of the hospital for "@patients"), with its own bus consumer polled on
// its own thread and its own coroutine, on its own strand, that POSTs and
// waits for the answer. The poll thread reads ahead at most queue_capacity
// deliverable records; an unreachable endpoint holds that much memory and
// never delays another destination.
//
// Order and at-least-once. One POST in flight per destination; the next
// record is POSTed only after the current one was delivered or dead-lettered.
// Offsets are committed only then (per partition, just below the oldest
// record still undelivered), so after a crash or restart the record that was
// in flight is POSTed again, with the same Idempotency-Key.
//
// Outcomes of one attempt (classify() below; RetryPolicy of the endpoint:
// initial_backoff_ms doubling to max_backoff_ms, max_attempts; defaults 1 s,
// 5 min, 20; each attempt bounded by timeout_ms, default 10 s):
//   2xx                         delivered: commit, next record.
//   endpoint unavailable:       nothing is wrong with this event; the endpoint
//     connect / resolve / TLS   is not taking anything now (down, overloaded,
//     failure, timeout, reset,  being deployed, or its URL or credentials are
//     408, 421, 425, 429, 5xx,  wrong: the next event would fail the same way).
//     401, 403, 404, 405, 407,  Retried with backoff; Retry-After (429/503...)
//     410, secret unresolvable  is honoured up to max_backoff_ms.
//   refused: any other status   the endpoint refused this event (400, 409, 413,
//     (3xx, 400, 409, 413, 415, 415, 422, ...). Counted; some gateways refuse
//     422, ...)                 for passing reasons (a record lock, a patient
//                               not yet synchronised), so the same record is
//                               retried with backoff until max_attempts
//                               refusals, then dead-lettered, and the
//                               destination goes on with the next record.
// The bound on retrying differs by who is waiting:
//   hospital   as the MLLP sender: an unavailable endpoint is retried without
//              bound. Its events are ordered (a correction must not overtake
//              the report it corrects) and an outage of the clinic's gateway
//              must end with everything delivered, not with a pile of dead
//              letters that someone has to replay in order; the operator sees
//              the queue depth and last success grow. Refusals are bounded.
//   @patients  every failure counts: an event is dead-lettered after
//              max_attempts failed attempts of any kind, or, after a failed
//              attempt, once it has waited longer than the retry window since
//              it was published on the outbound topic (the window is the sum
//              of the backoffs between max_attempts attempts: about 59 minutes
//              with the defaults). A notification that cannot be delivered
//              within that window ("your appointment is tomorrow") is worth
//              more to an operator as a dead letter than to the patient as a
//              late message; the age bound keeps one gateway outage from
//              holding every later notification for a whole retry schedule
//              each: after the outage, what waited longer than the window
//              gets one more attempt and is then dead-lettered.
// Before any attempt, an event that cannot be rendered (no template fits, a
// template names an unknown placeholder, no patient identifier or contact
// point) is dead-lettered at once.
//
// Dead letters go to yilian.deadletter.v1 keyed by the destination key
// (hospital id or "@patients"): an Envelope (event_id = SHA-256 of
// "outbound|<label>|<event id>", so a repeated dead-lettering deduplicates;
// causation_id = the original event id; the original correlation and trace,
// never its subject) whose DeadLetter has stage "outbound", where
// "outbound:<label>", source_hospital the destination key, attempts,
// original_event_id, original_topic, control_id = the event id (the
// Idempotency-Key), message_type "webhook:<body type>", error_code
// (validation_failed for refusals, parse_error for a value that is not an
// Envelope, the rendering error's code, else the last failure's), retriable,
// and the reason: for hospitals with the first 300 bytes of the gateway's
// answer, for the patient channel without it (a gateway may echo the
// patient's number). DeadLetter.raw points at the record
// ("event://<topic>/<partition>/<offset>") with its SHA-256 and size. A dead
// letter that cannot be published is retried; nothing is committed before it
// is durable.
//
// Secrets. Credentials are resolved (environment variable or file) when the
// sender starts; one that cannot be resolved does not stop the engine: the
// destination logs it and every attempt tries again (a file can be fixed
// without a restart) and fails as "endpoint unavailable" meanwhile, with the
// reason in status().last_error. Secret values never reach logs or statuses.
//
// Metrics: the MLLP sender's families, shared (same name, type and labels; the
// registry returns the existing family), with destination = "<hospital>/<endpoint
// id>" or "@patients/<endpoint id>"; every series exists from start(), at zero:
//   yilian_outbound_queue_depth, yilian_outbound_delivered_total (2xx here),
//   yilian_outbound_retries_total, yilian_outbound_dead_letters_total,
//   yilian_outbound_last_success_timestamp_seconds.
// Logs (component "webhook.sender") carry destination, event_id, attempt,
// outcome (HTTP status or failure kind) and wait; a gateway's answer text is
// logged redacted.
//
// Ownership and threads: the sender owns its destinations; each owns a poll
// thread, a consumer and an HTTP client. start(), stop() and status() may be
// called from any thread; wait_stopped() is awaited on any executor. The bus,
// the consortium and the registry must outlive the sender.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
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

namespace yilian::webhook {

// The record key of the patient notification channel.
inline constexpr std::string_view patients_key = "@patients";

struct sender_options {
  // Prepended (with "-") to every destination's consumer group. The app passes
  // BusConfig.kafka.group_prefix on Kafka and "" on the embedded log.
  std::string group_prefix;
  // Topics; empty = the standard names (config::topic_name).
  std::string outbound_topic;
  std::string deadletter_topic;
  // Where a destination's group starts when it has no committed offset.
  bus::start_from start = bus::start_from::earliest;
  // How long one bus poll waits; also bounds how late a delivered record's
  // commit is and how fast stop() is noticed by the poll thread.
  std::chrono::milliseconds poll_timeout{100};
  // Deliverable records read ahead per destination.
  std::size_t queue_capacity = 256;
  // How often the queue depth gauge's partition end offsets are refreshed.
  std::chrono::milliseconds lag_interval{1000};
  // Connect (and TLS handshake) deadline, within the attempt's timeout_ms.
  std::chrono::milliseconds connect_timeout{5000};
  // Keep-alive connections idle longer than this are not reused.
  std::chrono::milliseconds idle_timeout{15000};
  // The part of a gateway's answer kept for diagnostics.
  std::size_t max_response_bytes = 64 * 1024;
  // Check server certificates of https endpoints. Off only in tests.
  bool tls_verify = true;
  // Unix time for X-Yilian-Timestamp and the patient channel's age bound;
  // empty = the system clock. Tests only.
  std::function<std::int64_t()> unix_ms;
};

// What one HTTP status means for a delivery (see the header comment).
enum class outcome_class { delivered, unavailable, refused };
outcome_class classify(unsigned status);

// The patient channel's retry window: the sum of the waits between
// max_attempts attempts (initial backoff doubling up to the maximum).
std::chrono::milliseconds retry_window(std::uint32_t initial_backoff_ms, std::uint32_t max_backoff_ms,
                                       std::uint32_t max_attempts);

// A snapshot of one destination for the console and tests.
struct destination_status {
  std::string key;          // hospital id, or "@patients"
  std::string endpoint_id;
  std::string label;        // "<key>/<endpoint id>"
  std::string group;        // its consumer group
  std::string address;      // the URL's origin ("https://host:port"; never the path)
  bool connected = false;
  std::int64_t queue_depth = 0;
  std::uint64_t delivered = 0;
  std::uint64_t retries = 0;
  std::uint64_t dead_letters = 0;
  std::string current_event_id;  // being delivered; empty when idle
  std::uint32_t attempt = 0;     // of the current event (1 = first try)
  std::string last_outcome;      // "200", "503", "timeout", "unavailable", "dead-lettered", ...
  std::string last_error;        // error::describe() of the last failure (no patient data)
  std::int64_t last_success_unix_ms = 0;
};

class webhook_sender {
 public:
  // `executor` runs the destinations' coroutines (each on a strand of it).
  webhook_sender(boost::asio::any_io_executor executor, bus::bus& bus, const config::loaded_consortium& consortium,
                 sender_options options, metrics::registry& registry);
  ~webhook_sender();
  webhook_sender(const webhook_sender&) = delete;
  webhook_sender& operator=(const webhook_sender&) = delete;

  // Creates the destinations, subscribes their consumer groups and starts
  // their threads and coroutines. Errors: errc::config_error (an address that
  // is not an http(s) URL, tls given for an http:// URL, two destinations with
  // the same group), the bus's subscribe errors. On error nothing is left
  // running. Calling it twice is errc::invalid_argument.
  result<void> start();

  // Asks every destination to stop: the POST in flight is abandoned (its
  // record is not committed and is POSTed again after a restart, with the same
  // Idempotency-Key), backoff waits end, polling stops. Idempotent.
  void stop();

  // Completes when every destination has stopped and committed what it
  // delivered (after stop(); at once when never started).
  boost::asio::awaitable<void> wait_stopped();

  // stop(), then `done` on the executor once every destination has stopped
  // (for `yilian serve`'s shutdown chain).
  void stop(std::function<void()> done);

  std::vector<destination_status> status() const;

  // "[<prefix>-]yilian-outbound-<hospital>-<endpoint id>"; "@patients" is
  // written "patients".
  static std::string group_name(std::string_view prefix, std::string_view key, std::string_view endpoint_id);

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

// What `yilian serve` calls: a started sender for every WEBHOOK endpoint and
// the patient channel (a sender with no destinations when there are none).
// Same errors as webhook_sender::start().
result<std::unique_ptr<webhook_sender>> start_webhook_senders(boost::asio::any_io_executor executor, bus::bus& bus,
                                                              const config::loaded_consortium& consortium,
                                                              sender_options options, metrics::registry& registry);

}  // namespace yilian::webhook
