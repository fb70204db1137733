// Helpers for the ingest store's tests: a temporary directory, requests that
// name their message, and calls that wait for a handler with a deadline
// (never forever).
#pragma once

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/store/ingest_store.h"
#include "tests/support/temp_dir.h"

namespace yilian::store::test {

using namespace std::chrono_literals;

// A temporary directory; the store under test is ingest/ingest.db in it.
class temp_dir : public yilian::test::temp_dir {
 public:
  temp_dir() : yilian::test::temp_dir("yilian-store-test") {}
  std::filesystem::path db() const { return file("ingest/ingest.db"); }
};

// An HL7-looking message of about `size` bytes whose content names `control_id`
// and `variant` (a different variant = different content, same control id).
inline std::string message_bytes(const std::string& control_id, int variant = 0, std::size_t size = 1500) {
  std::string m = "MSH|^~\\&|HIS|FAC-A|YILIAN|HUB|20250601120000||ADT^A01|" + control_id + "|P|2.5\r";
  m += "PID|1||" + std::to_string(variant) + "^^^HOSP^MR\r";
  while (m.size() < size) m += "NTE|1||filler text to reach a realistic message size " + std::to_string(m.size()) + "\r";
  return m;
}

inline receipt_key key_of(const std::string& control_id, const std::string& facility = "FAC-A") {
  return receipt_key{.hospital = "zs-tertiary", .facility = facility, .control_id = control_id};
}

inline std::vector<std::string> event_ids_of(const receipt_key& key, std::size_t n) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(sha256_hex(key.hospital + "|hl7v2|" + key.facility + "|" +
                                                               key.control_id + "|" + std::to_string(i)));
  return out;
}

inline reserve_request request_for(const std::string& control_id, int variant = 0, std::size_t events = 2,
                                   std::size_t size = 1500) {
  auto key = key_of(control_id);
  auto ids = event_ids_of(key, events);
  return reserve_request{.key = std::move(key), .sha256 = {}, .raw = message_bytes(control_id, variant, size),
                         .meta = {.content_type = "application/hl7-v2", .charset = "UNICODE UTF-8",
                                  .received_at_ms = 0},
                         .event_ids = std::move(ids), .message_type = "ADT^A01^ADT_A01"};
}

inline std::unique_ptr<ingest_store> open_store(ingest_store_options options) {
  auto s = ingest_store::open(std::move(options));
  if (!s) throw std::runtime_error("open ingest store: " + s.error().describe());
  return std::move(*s);
}

// A reserve whose answer arrives later (parked requests) or now.
class pending_reserve {
 public:
  pending_reserve(ingest_store& store, reserve_request req) {
    auto p = std::make_shared<std::promise<result<reserve_outcome>>>();
    future_ = p->get_future();
    store.reserve(std::move(req), [p](result<reserve_outcome> r) { p->set_value(std::move(r)); });
  }
  bool ready(std::chrono::milliseconds within = 0ms) {
    return future_.wait_for(within) == std::future_status::ready;
  }
  result<reserve_outcome> get(std::chrono::milliseconds within = 30s) {
    if (future_.wait_for(within) != std::future_status::ready) {
      return fail(errc::timeout, "the test gave up waiting for the reserve handler");
    }
    return future_.get();
  }

 private:
  std::future<result<reserve_outcome>> future_;
};

// "fresh", "resend_done", "resend_pending", "conflict" or "error: <why>".
inline std::string what(const result<reserve_outcome>& r) {
  if (!r) return "error: " + r.error().describe();
  switch (r->what) {
    case reserve_outcome::kind::fresh:
      return "fresh";
    case reserve_outcome::kind::resend_done:
      return "resend_done";
    case reserve_outcome::kind::resend_pending:
      return "resend_pending";
    case reserve_outcome::kind::conflict:
      return "conflict";
  }
  return "unknown";
}

inline result<reserve_outcome> reserve_wait(ingest_store& store, reserve_request req) {
  return pending_reserve(store, std::move(req)).get();
}

inline result<void> settle_wait(ingest_store& store, const receipt_key& key, bool complete,
                                std::vector<std::string> published = {}) {
  auto p = std::make_shared<std::promise<result<void>>>();
  auto f = p->get_future();
  auto done = [p](result<void> r) { p->set_value(std::move(r)); };
  if (complete) {
    store.complete(key, done);
  } else {
    store.abandon(key, std::move(published), done);
  }
  if (f.wait_for(30s) != std::future_status::ready) return fail(errc::timeout, "settle handler not called");
  return f.get();
}

}  // namespace yilian::store::test
