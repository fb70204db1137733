#include "adapters/webhook/sender.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/status.hpp>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "adapters/webhook/http_client.h"
#include "adapters/webhook/notification.h"
#include "adapters/webhook/signing.h"
#include "engine/bus/publish.h"
#include "engine/core/log.h"
#include "engine/core/murmur2.h"
#include "yilian/events/v1/envelope.pb.h"
#include "engine/core/thread.h"

namespace yilian::webhook {

namespace asio = boost::asio;
namespace ev = events::v1;
namespace cfg = config::v1;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

const log::logger& logger() {
  static const auto lg = log::get("webhook.sender");
  return lg;
}

std::int64_t system_unix_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

google::protobuf::Timestamp timestamp_of_ms(std::int64_t ms) {
  google::protobuf::Timestamp t;
  t.set_seconds(ms / 1000);
  t.set_nanos(static_cast<std::int32_t>(ms % 1000) * 1000000);
  return t;
}

// Defaults of RetryPolicy and OutboundEndpoint (config applies them too; a
// configuration built in code may leave them zero).
std::uint32_t or_default(std::uint32_t v, std::uint32_t fallback) { return v == 0 ? fallback : v; }

std::string status_text(unsigned status) {
  const auto reason = boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  std::string out = std::to_string(status);
  if (!reason.empty() && reason != "<unknown-status>") out += " " + std::string(reason);
  return out;
}

// The part of a gateway's answer a hospital dead letter keeps: its first 300
// bytes, not cut inside a UTF-8 sequence.
std::string answer_excerpt(std::string_view answer) {
  if (answer.size() <= 300) return std::string(answer);
  std::size_t n = 300;
  while (n > 0 && (static_cast<unsigned char>(answer[n]) & 0xC0) == 0x80) --n;
  return std::string(answer.substr(0, n)) + "...";
}

// One record handed from the poll thread to the destination's coroutine.
struct item {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::int64_t timestamp_ms = 0;      // when it was published on the outbound topic
  std::string value;                  // kept for the dead letter's hash and size
  std::optional<ev::Envelope> event;  // nullopt: the value is not an Envelope
};

struct attempt_result {
  outcome_class kind = outcome_class::unavailable;
  std::string outcome;  // "200", "503", "timeout", "unavailable", "tls", "no-secret", ...
  error err;            // for failures; never the gateway's text
  std::string answer;   // the gateway's body (may hold anything: never logged plainly)
  std::optional<milliseconds> retry_after;
};

}  // namespace

outcome_class classify(unsigned status) {
  if (status >= 200 && status < 300) return outcome_class::delivered;
  switch (status) {
    case 401:  // credentials wrong or not yet rotated on one side
    case 403:
    case 404:  // the URL is wrong, or the gateway is being deployed
    case 405:
    case 407:
    case 408:  // request timeout
    case 410:
    case 421:  // misdirected (a proxy in front of the gateway)
    case 425:
    case 429:  // slow down
      return outcome_class::unavailable;
    default:
      break;
  }
  if (status >= 500 && status < 600) return outcome_class::unavailable;
  return outcome_class::refused;
}

milliseconds retry_window(std::uint32_t initial_backoff_ms, std::uint32_t max_backoff_ms, std::uint32_t max_attempts) {
  milliseconds wait(std::max<std::uint32_t>(1, initial_backoff_ms));
  const milliseconds most = std::max(wait, milliseconds(max_backoff_ms));
  milliseconds total{0};
  for (std::uint32_t i = 1; i < max_attempts; ++i) {
    total += wait;
    wait = std::min(wait * 2, most);
  }
  return total;
}

// --- destination -------------------------------------------------------------

class webhook_sender::destination : public std::enable_shared_from_this<destination> {
 public:
  struct settings {
    bool patients = false;
    std::string key;  // record key: hospital id or "@patients"
    std::string endpoint_id;
    std::string label;
    std::string group;
    url address;
    cfg::OutboundEndpoint endpoint;
    std::optional<client_tls> tls;
    std::string outbound_topic;
    std::string deadletter_topic;
    sender_options opts;
    const config::loaded_consortium* consortium = nullptr;
  };

  destination(settings s, asio::any_io_executor ex, bus::bus& b, metrics::registry& reg)
      : s_(std::move(s)),
        strand_(asio::make_strand(ex)),
        bus_(b),
        wake_(strand_),
        backoff_timer_(strand_),
        depth_(reg.add_gauge("yilian_outbound_queue_depth",
                             "Outbound records for the destination not yet delivered (read ahead, in flight, and "
                             "the unread part of its partition).",
                             {"destination"})
                   .with({s_.label})),
        delivered_(reg.add_counter("yilian_outbound_delivered_total",
                                   "Outbound messages the destination accepted (MLLP AA/CA, HTTP 2xx).",
                                   {"destination"})
                       .with({s_.label})),
        retries_(reg.add_counter("yilian_outbound_retries_total", "Outbound attempts after the first, all causes.",
                                 {"destination"})
                     .with({s_.label})),
        dead_letters_(reg.add_counter("yilian_outbound_dead_letters_total",
                                      "Outbound events given up on and published to the deadletter topic.",
                                      {"destination"})
                          .with({s_.label})),
        last_success_(reg.add_gauge("yilian_outbound_last_success_timestamp_seconds",
                                    "Unix time of the destination's last accepted delivery (0 = never).",
                                    {"destination"})
                          .with({s_.label})) {
    status_.key = s_.key;
    status_.endpoint_id = s_.endpoint_id;
    status_.label = s_.label;
    status_.group = s_.group;
    status_.address = s_.address.origin();
    const auto& r = s_.endpoint.retry();
    initial_backoff_ = milliseconds(or_default(r.initial_backoff_ms(), 1000));
    max_backoff_ = std::max(initial_backoff_, milliseconds(or_default(r.max_backoff_ms(), 300000)));
    max_attempts_ = or_default(r.max_attempts(), 20);
    timeout_ = milliseconds(or_default(s_.endpoint.timeout_ms(), 10000));
    window_ = retry_window(static_cast<std::uint32_t>(initial_backoff_.count()),
                           static_cast<std::uint32_t>(max_backoff_.count()), max_attempts_);
    client_ = std::make_unique<http_client>(strand_, client_options{.address = s_.address,
                                                                    .tls = s_.tls,
                                                                    .connect_timeout = s_.opts.connect_timeout,
                                                                    .idle_timeout = s_.opts.idle_timeout,
                                                                    .max_response_bytes = s_.opts.max_response_bytes});
    const auto& cred = s_.endpoint.credentials();
    auth_.scheme = cred.scheme() == cfg::AUTH_SCHEME_UNSPECIFIED ? cfg::AUTH_SCHEME_NONE : cred.scheme();
    auth_.username = cred.username();
    if (s_.patients) {
      const std::string& tz = s_.consortium->consortium.time_zone();
      auto zone = tz.empty() ? result<time_zone>(time_zone{}) : time_zone::load(tz);
      if (!zone) {
        logger().warn("consortium time zone not found: {start} in UTC",
                      {log::field("destination", s_.label), log::field("error", zone.error().describe())});
        zone = time_zone{};
      }
      render_ = render_context{.consortium = &s_.consortium->consortium, .zone = *zone};
    }
  }

  ~destination() {
    // The last reference may be the poll thread's own (its lambda's copy).
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();
      else thread_.join();
    }
  }

  const settings& config() const { return s_; }

  // Resolves the secret now so that a missing one is reported at startup.
  void resolve_credentials() {
    if (!needs_secret()) return;
    auto secret = resolve_secret(s_.endpoint.credentials().secret(), *s_.consortium);
    if (secret) {
      auth_.secret = std::move(*secret);
      secret_ok_ = true;
      return;
    }
    logger().error("webhook secret cannot be resolved; deliveries wait for it",
                   {log::field("destination", s_.label), log::field("error", secret.error().describe())});
    std::lock_guard lock(mu_);
    status_.last_error = secret.error().describe();
  }

  result<void> subscribe() {
    auto parts = bus_.partitions(s_.outbound_topic);
    if (!parts) return std::unexpected(parts.error());
    partition_ = partition_for_key(s_.key, std::max<std::int32_t>(1, *parts));
    auto c = bus_.subscribe(bus::consumer_options{.group = s_.group, .topics = {s_.outbound_topic}, .start = s_.opts.start});
    if (!c) return std::unexpected(c.error());
    consumer_ = std::move(*c);
    return {};
  }

  void launch() {
    thread_ = std::thread([self = shared_from_this()] {
      name_this_thread("yl-webhook-out");
      self->poll_loop();
    });
    asio::co_spawn(strand_, run(), [self = shared_from_this()](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          logger().critical("destination coroutine failed", {log::field("destination", self->s_.label),
                                                             log::field("error", std::string(ex.what()))});
        } catch (...) {
          logger().critical("destination coroutine failed", {log::field("destination", self->s_.label)});
        }
      }
      self->mark_finished();
    });
  }

  void request_stop() {
    if (stop_requested_.exchange(true)) return;
    cv_.notify_all();
    asio::post(strand_, [self = shared_from_this()] {
      self->wake_.cancel();
      self->backoff_timer_.cancel();
      self->client_->close();
    });
  }

  // The coroutine will never finish (its io_context is gone): let the poll
  // thread end anyway.
  void force_stop() {
    {
      std::lock_guard lock(mu_);
      force_ = true;
    }
    cv_.notify_all();
  }

  void join() {
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

  bool stopped() const { return stopped_.load(); }

  destination_status status() const {
    std::lock_guard lock(mu_);
    auto out = status_;
    out.connected = connected_.load();
    out.queue_depth = static_cast<std::int64_t>(depth_.value());
    out.delivered = static_cast<std::uint64_t>(delivered_.value());
    out.retries = static_cast<std::uint64_t>(retries_.value());
    out.dead_letters = static_cast<std::uint64_t>(dead_letters_.value());
    return out;
  }

 private:
  bool needs_secret() const {
    return auth_.scheme == cfg::AUTH_SCHEME_BEARER || auth_.scheme == cfg::AUTH_SCHEME_BASIC ||
           auth_.scheme == cfg::AUTH_SCHEME_HMAC_SHA256;
  }

  std::int64_t now_ms() const { return s_.opts.unix_ms ? s_.opts.unix_ms() : system_unix_ms(); }

  // --- poll thread ---------------------------------------------------------

  struct partition_track {
    std::deque<std::int64_t> pending;  // deliverable records read, not yet delivered, in offset order
    std::int64_t read_upto = -1;       // highest offset read
    std::int64_t committed = -1;       // highest offset committed (inclusive)
  };

  bool routed(const ev::Envelope& e) const {
    const std::string name = body_type(e);
    // Outcomes and quarantine records are about deliveries, never deliveries.
    if (name == "DeliveryAcknowledged" || name == "DeadLetter") return false;
    for (const auto& t : s_.endpoint.event_types()) {
      if (t == "*" || t == name) return true;
    }
    return false;
  }

  std::size_t pending_total() const {
    std::size_t n = 0;
    for (const auto& [p, t] : tracks_) n += t.pending.size();
    return n;
  }

  void commit_progress() {
    std::vector<bus::record> commits;
    for (const auto& [p, t] : tracks_) {
      const std::int64_t point = t.pending.empty() ? t.read_upto : t.pending.front() - 1;
      if (point > t.committed) {
        commits.push_back(bus::record{.topic = s_.outbound_topic, .partition = p, .offset = point});
      }
    }
    if (commits.empty()) return;
    if (auto r = consumer_->commit(commits); !r) {
      // Not fatal: the records are POSTed again after a restart
      // (at-least-once). A partition the group moved to another member is
      // forgotten: its new owner delivers from the committed offset.
      if (commit_failures_++ % 50 == 0) {
        logger().warn("commit failed", {log::field("destination", s_.label), log::field("error", r.error().describe()),
                                        log::field("failures", commit_failures_)});
      }
      const auto assigned = consumer_->assignment();
      std::erase_if(tracks_, [&](const auto& entry) {
        return std::none_of(assigned.begin(), assigned.end(), [&](const auto& a) {
          return a.first == s_.outbound_topic && a.second == entry.first;
        });
      });
      return;
    }
    commit_failures_ = 0;
    for (const auto& c : commits) {
      if (auto it = tracks_.find(c.partition); it != tracks_.end()) it->second.committed = c.offset;
    }
  }

  void refresh_depth(bool refresh_end) {
    if (refresh_end) {
      if (auto lag = consumer_->lag(); lag) {
        end_known_ = false;
        for (const auto& l : *lag) {
          if (l.partition != partition_) continue;
          end_ = l.end;
          committed_at_ = l.committed;
          end_known_ = true;
        }
      }
    }
    std::int64_t unread = 0;
    if (end_known_) {
      std::int64_t next = committed_at_ < 0 ? 0 : committed_at_;
      if (auto it = tracks_.find(partition_); it != tracks_.end() && it->second.read_upto >= 0) {
        next = std::max(next, it->second.read_upto + 1);
      }
      unread = std::max<std::int64_t>(0, end_ - next);
    }
    depth_.set(static_cast<double>(pending_total()) + static_cast<double>(unread));
  }

  void poll_loop() {
    auto next_lag = clock::now();
    std::uint64_t poll_failures = 0;
    for (;;) {
      std::vector<std::pair<std::int32_t, std::int64_t>> done;
      bool finished = false;
      {
        std::lock_guard lock(mu_);
        done.swap(done_);
        finished = finished_ || force_;
      }
      for (const auto& [p, off] : done) {
        auto t = tracks_.find(p);
        if (t == tracks_.end()) continue;  // the partition moved to another member meanwhile
        auto& q = t->second.pending;
        if (auto it = std::find(q.begin(), q.end(), off); it != q.end()) q.erase(it);
      }
      commit_progress();
      if (finished) break;

      const std::size_t queued = pending_total();
      bool changed = !done.empty();
      if (!stop_requested_.load() && queued < s_.opts.queue_capacity) {
        const std::size_t room = std::min<std::size_t>(s_.opts.queue_capacity - queued, 512);
        auto batch = consumer_->poll(s_.opts.poll_timeout, room);
        if (!batch) {
          if (poll_failures++ % 50 == 0) {
            logger().warn("poll failed", {log::field("destination", s_.label),
                                          log::field("error", batch.error().describe()),
                                          log::field("failures", poll_failures)});
          }
          std::unique_lock lock(mu_);
          cv_.wait_for(lock, s_.opts.poll_timeout, [&] { return finished_ || force_ || !done_.empty(); });
          continue;
        }
        poll_failures = 0;
        std::vector<item> items;
        for (auto& r : *batch) {
          auto& t = tracks_[r.partition];
          t.read_upto = std::max(t.read_upto, r.offset);
          changed = true;
          if (r.key != s_.key) continue;
          item it{.topic = r.topic,
                  .partition = r.partition,
                  .offset = r.offset,
                  .timestamp_ms = r.timestamp_ms,
                  .value = {},
                  .event = std::nullopt};
          ev::Envelope env;
          if (env.ParseFromString(r.value)) {
            if (!routed(env)) continue;
            it.event = std::move(env);
          }
          it.value = std::move(r.value);
          t.pending.push_back(r.offset);
          items.push_back(std::move(it));
        }
        if (!items.empty()) {
          {
            std::lock_guard lock(mu_);
            for (auto& i : items) ready_.push_back(std::move(i));
          }
          asio::post(strand_, [self = shared_from_this()] { self->wake_.cancel(); });
        }
        if (changed) commit_progress();  // skipped records ahead of nothing pending
      } else {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, s_.opts.poll_timeout, [&] { return finished_ || force_ || !done_.empty(); });
      }
      const bool refresh = clock::now() >= next_lag;
      if (refresh) next_lag = clock::now() + s_.opts.lag_interval;
      refresh_depth(refresh);
    }
    refresh_depth(true);
    consumer_->close();
    stopped_.store(true);
  }

  // --- coroutine (on strand_) ----------------------------------------------

  void mark_finished() {
    {
      std::lock_guard lock(mu_);
      finished_ = true;
      status_.current_event_id.clear();
      status_.attempt = 0;
    }
    cv_.notify_all();
  }

  asio::awaitable<std::optional<item>> next_item() {
    for (;;) {
      if (stop_requested_.load()) co_return std::nullopt;
      {
        std::lock_guard lock(mu_);
        if (!ready_.empty()) {
          item it = std::move(ready_.front());
          ready_.pop_front();
          co_return it;
        }
      }
      // The poll thread cancels this wait (on the strand) after queueing, so
      // a record queued between the check above and the wait is not missed.
      boost::system::error_code ec;
      wake_.expires_at(clock::time_point::max());
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // false when stopped first.
  asio::awaitable<bool> sleep(milliseconds d) {
    if (stop_requested_.load()) co_return false;
    boost::system::error_code ec;
    backoff_timer_.expires_after(d);
    co_await backoff_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_return !stop_requested_.load();
  }

  void set_status(std::string_view event_id, std::uint32_t attempt, std::string_view outcome, std::string_view err) {
    std::lock_guard lock(mu_);
    status_.current_event_id = std::string(event_id);
    status_.attempt = attempt;
    if (!outcome.empty()) status_.last_outcome = std::string(outcome);
    if (!err.empty()) status_.last_error = std::string(err);
  }

  asio::awaitable<void> run() {
    for (;;) {
      auto it = co_await next_item();
      if (!it) break;
      const bool done = co_await deliver(*it);
      if (!done) break;
      {
        std::lock_guard lock(mu_);
        done_.emplace_back(it->partition, it->offset);
        status_.current_event_id.clear();
        status_.attempt = 0;
      }
      cv_.notify_all();
    }
    client_->close();
    connected_.store(false);
  }

  asio::awaitable<attempt_result> attempt_once(const std::string& body, const std::string& event_id,
                                               const std::string& type, std::uint32_t attempt) {
    if (needs_secret() && !secret_ok_) {
      // Read again on every attempt: a secret file can be fixed without a restart.
      auto secret = resolve_secret(s_.endpoint.credentials().secret(), *s_.consortium);
      if (!secret) {
        co_return attempt_result{.kind = outcome_class::unavailable,
                                 .outcome = "no-secret",
                                 .err = secret.error(),
                                 .answer = {},
                                 .retry_after = std::nullopt};
      }
      auth_.secret = std::move(*secret);
      secret_ok_ = true;
    }
    const delivery d{.event_id = event_id, .event_type = type, .attempt = attempt, .unix_seconds = now_ms() / 1000};
    const std::vector<header> headers = delivery_headers(d, auth_, body);
    auto r = co_await client_->post(body, headers, timeout_);
    connected_.store(client_->connected());
    if (!r) {
      const errc code = r.error().code;
      std::string outcome = code == errc::timeout           ? "timeout"
                            : code == errc::unauthenticated ? "tls"
                            : code == errc::config_error    ? "tls-config"
                            : code == errc::parse_error     ? "bad-response"
                                                            : "unavailable";
      co_return attempt_result{.kind = outcome_class::unavailable,
                               .outcome = std::move(outcome),
                               .err = r.error(),
                               .answer = {},
                               .retry_after = std::nullopt};
    }
    const unsigned status = r->status;
    const outcome_class kind = classify(status);
    attempt_result out{.kind = kind,
                       .outcome = std::to_string(status),
                       .err = {},
                       .answer = std::move(r->body),
                       .retry_after = std::nullopt};
    if (r->retry_after) out.retry_after = std::chrono::duration_cast<milliseconds>(*r->retry_after);
    if (kind == outcome_class::unavailable) {
      out.err = error::make(errc::unavailable, "the endpoint answered " + status_text(status), "HTTP status");
    } else if (kind == outcome_class::refused) {
      out.err = error::make(errc::validation_failed, "the endpoint refused the event: " + status_text(status),
                            "HTTP status");
    }
    co_return out;
  }

  // The bytes to POST for `e`; an error is dead-lettered without an attempt.
  result<std::string> render_body(const ev::Envelope& e) const {
    if (s_.patients) {
      auto n = render_notification(e, s_.consortium->consortium.patient_notifications(), render_);
      if (!n) return std::unexpected(n.error());
      return std::move(n->body);
    }
    std::string text;
    if (auto st = google::protobuf::util::MessageToJsonString(e, &text); !st.ok()) {
      return fail(errc::internal, "the event cannot be written as JSON: " + st.ToString(), "value");
    }
    return text;
  }

  // Delivers one record to its end: true when delivered or dead-lettered,
  // false when stopped first (the record stays uncommitted).
  asio::awaitable<bool> deliver(const item& it) {
    // g++ 12 destroys temporaries inside a co_await expression twice: every
    // argument below is a named object.
    const std::string event_id = it.event ? it.event->event_id() : std::string{};
    const std::string type = it.event ? body_type(*it.event) : std::string{};
    set_status(event_id, 0, {}, {});
    if (!it.event) {
      const error why = error::make(errc::parse_error, "the record value is not a yilian.events.v1.Envelope", "value");
      const bool ok = co_await dead_letter(it, why, 0, type);
      co_return ok;
    }
    auto body = render_body(*it.event);
    if (!body) {
      const error why = body.error();
      const bool ok = co_await dead_letter(it, why, 0, type);
      co_return ok;
    }

    auto backoff = initial_backoff_;
    std::uint32_t attempts = 0;
    std::uint32_t refusals = 0;
    for (;;) {
      if (stop_requested_.load()) co_return false;
      ++attempts;
      if (attempts > 1) retries_.inc();
      set_status(event_id, attempts, {}, {});
      auto r = co_await attempt_once(*body, event_id, type, attempts);
      if (stop_requested_.load() && r.kind != outcome_class::delivered) co_return false;
      if (r.kind == outcome_class::delivered) {
        delivered_.inc();
        const std::int64_t now = now_ms();
        last_success_.set(static_cast<double>(now) / 1000.0);
        {
          std::lock_guard lock(mu_);
          status_.last_outcome = r.outcome;
          status_.last_success_unix_ms = now;
        }
        // One line per event at debug; a delivery that needed retries is
        // worth an info line (the destination recovered).
        logger().write(attempts > 1 ? log::level::info : log::level::debug, "delivered",
                       {log::field("destination", s_.label), log::field("event_id", event_id),
                        log::field("attempt", attempts), log::field("outcome", r.outcome),
                        log::field("event_type", type)});
        co_return true;
      }
      set_status(event_id, attempts, r.outcome, r.err.describe());
      if (r.kind == outcome_class::refused) ++refusals;
      bool give_up = r.kind == outcome_class::refused && refusals >= max_attempts_;
      if (s_.patients) {
        // Every failure counts, and so does the time the event has waited.
        const bool too_old = it.timestamp_ms > 0 && now_ms() - it.timestamp_ms >= window_.count();
        give_up = give_up || attempts >= max_attempts_ || too_old;
      }
      if (give_up) {
        error e = r.err;
        if (!s_.patients && !r.answer.empty()) e.message += ": " + answer_excerpt(r.answer);
        const bool ok = co_await dead_letter(it, e, attempts, type);
        co_return ok;
      }
      milliseconds wait = backoff;
      if (r.retry_after) wait = std::min(std::max(wait, *r.retry_after), max_backoff_);
      logger().warn("delivery failed; retrying", {log::field("destination", s_.label), log::field("event_id", event_id),
                                                  log::field("attempt", attempts), log::field("outcome", r.outcome),
                                                  log::field("error", r.err.describe()),
                                                  log::redacted("answer", r.answer), log::field("wait", wait)});
      if (!co_await sleep(wait)) co_return false;
      backoff = std::min(backoff * 2, max_backoff_);
    }
  }

  asio::awaitable<bool> dead_letter(const item& it, const error& why, std::uint32_t attempts, const std::string& type) {
    const std::string original_id = it.event ? it.event->event_id() : std::string{};
    const std::string raw_uri =
        "event://" + it.topic + "/" + std::to_string(it.partition) + "/" + std::to_string(it.offset);

    ev::Envelope env;
    env.set_event_id(sha256_hex("outbound|" + s_.label + "|" + (original_id.empty() ? raw_uri : original_id)));
    env.set_type("yilian.events.v1.DeadLetter");
    env.set_schema_version(1);
    const auto now = timestamp_of_ms(now_ms());
    *env.mutable_occurred_at() = now;
    *env.mutable_recorded_at() = now;
    env.mutable_source()->set_hospital(s_.key);
    env.mutable_source()->set_system("webhook.sender");
    env.mutable_source()->set_protocol(ev::PROTOCOL_ENGINE);
    if (it.event) {
      *env.mutable_correlation() = it.event->correlation();
      *env.mutable_trace() = it.event->trace();
    }
    env.set_causation_id(original_id);
    auto* dl = env.mutable_dead_letter();
    auto* raw = dl->mutable_raw();
    raw->set_uri(raw_uri);
    raw->set_sha256(sha256_hex(it.value));
    raw->set_size_bytes(it.value.size());
    raw->set_content_type("application/x-protobuf; messageType=yilian.events.v1.Envelope");
    dl->set_reason(why.message);
    dl->set_error_code(std::string(to_string(why.code)));
    dl->set_where("outbound:" + s_.label);
    dl->set_stage("outbound");
    dl->set_source_hospital(s_.key);
    dl->set_control_id(original_id.substr(0, 199));
    dl->set_message_type(type.empty() ? std::string("webhook") : "webhook:" + type);
    dl->set_retriable(why.retriable);
    dl->set_attempts(attempts);
    dl->set_original_event_id(original_id);
    dl->set_original_topic(it.topic);
    const std::string value = env.SerializeAsString();

    auto backoff = initial_backoff_;
    for (;;) {
      bus::message msg{.topic = s_.deadletter_topic, .key = s_.key, .value = value, .headers = {}, .timestamp_ms = 0};
      auto published = co_await bus::async_publish(bus_, std::move(msg), asio::use_awaitable);
      if (published) break;
      logger().error("dead letter not published; retrying",
                     {log::field("destination", s_.label), log::field("event_id", original_id),
                      log::field("error", published.error().describe()), log::field("wait", backoff)});
      if (!co_await sleep(backoff)) co_return false;
      backoff = std::min(backoff * 2, max_backoff_);
    }
    dead_letters_.inc();
    {
      std::lock_guard lock(mu_);
      status_.last_outcome = "dead-lettered";
      status_.last_error = why.describe();
    }
    // The reason may quote a gateway's answer: only its code goes to the log.
    logger().warn("dead-lettered", {log::field("destination", s_.label), log::field("event_id", original_id),
                                    log::field("attempts", attempts), log::field("error_code", to_string(why.code)),
                                    log::field("where", why.where), log::field("record", raw_uri)});
    co_return true;
  }

  settings s_;
  asio::strand<asio::any_io_executor> strand_;
  bus::bus& bus_;
  std::unique_ptr<bus::consumer> consumer_;  // poll thread only (after subscribe)
  std::thread thread_;

  // Coroutine state (strand_ only, after launch()).
  asio::steady_timer wake_;
  asio::steady_timer backoff_timer_;
  std::unique_ptr<http_client> client_;
  auth auth_;
  bool secret_ok_ = false;
  render_context render_;
  milliseconds initial_backoff_{1000};
  milliseconds max_backoff_{300000};
  std::uint32_t max_attempts_ = 20;
  milliseconds timeout_{10000};
  milliseconds window_{0};

  // Poll thread state.
  std::map<std::int32_t, partition_track> tracks_;
  std::int32_t partition_ = 0;  // the partition the destination's key lands in
  std::int64_t end_ = 0;
  std::uint64_t commit_failures_ = 0;
  std::int64_t committed_at_ = -1;
  bool end_known_ = false;

  // Shared, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<item> ready_;
  std::vector<std::pair<std::int32_t, std::int64_t>> done_;
  bool finished_ = false;
  bool force_ = false;
  destination_status status_;

  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> connected_{false};

  metrics::gauge& depth_;
  metrics::counter& delivered_;
  metrics::counter& retries_;
  metrics::counter& dead_letters_;
  metrics::gauge& last_success_;
};

// --- webhook_sender ----------------------------------------------------------

webhook_sender::webhook_sender(asio::any_io_executor executor, bus::bus& bus, const config::loaded_consortium& consortium,
                               sender_options options, metrics::registry& registry)
    : executor_(std::move(executor)),
      bus_(bus),
      consortium_(consortium),
      options_(std::move(options)),
      registry_(registry) {
  if (options_.outbound_topic.empty()) options_.outbound_topic = std::string(config::topic_name(ev::TOPIC_OUTBOUND));
  if (options_.deadletter_topic.empty()) {
    options_.deadletter_topic = std::string(config::topic_name(ev::TOPIC_DEADLETTER));
  }
  if (options_.queue_capacity == 0) options_.queue_capacity = 1;
}

webhook_sender::~webhook_sender() {
  stop();
  // Give running coroutines a moment to finish on their io_context; a
  // destination whose coroutine cannot finish (io_context stopped) is forced.
  const auto deadline = clock::now() + std::chrono::seconds(2);
  for (auto& d : destinations_) {
    while (!d->stopped() && clock::now() < deadline) std::this_thread::sleep_for(milliseconds(5));
    d->force_stop();
    d->join();
  }
}

std::string webhook_sender::group_name(std::string_view prefix, std::string_view key, std::string_view endpoint_id) {
  std::string g;
  if (!prefix.empty()) g = std::string(prefix) + "-";
  g += "yilian-outbound-";
  g += key == patients_key ? std::string_view("patients") : key;
  g += "-";
  g += endpoint_id;
  return g;
}

result<void> webhook_sender::start() {
  if (started_.exchange(true)) return fail(errc::invalid_argument, "the webhook sender was started already");
  std::vector<destination::settings> wanted;
  auto add = [&](bool patients, const std::string& key, const cfg::OutboundEndpoint& ep,
                 const std::string& where) -> result<void> {
    destination::settings s;
    s.patients = patients;
    s.key = key;
    s.endpoint_id = ep.id().empty() ? std::string("webhook") : ep.id();
    s.label = key + "/" + s.endpoint_id;
    s.group = group_name(options_.group_prefix, key, s.endpoint_id);
    auto address = parse_url(ep.address());
    if (!address) {
      return fail(errc::config_error, "webhook address '" + ep.address() + "': " + address.error().message, where);
    }
    s.address = *address;
    if (ep.has_tls()) {
      if (!s.address.tls) {
        return fail(errc::config_error, "tls is given but the address is http://, not https://", where);
      }
      const auto& t = ep.tls();
      s.tls = client_tls{
          .ca_file = t.ca_file().empty() ? std::string{} : consortium_.resolve(t.ca_file()).string(),
          .cert_file = t.cert_file().empty() ? std::string{} : consortium_.resolve(t.cert_file()).string(),
          .key_file = t.key_file().empty() ? std::string{} : consortium_.resolve(t.key_file()).string(),
          .server_name = t.server_name(),
          .verify = options_.tls_verify};
    } else if (!options_.tls_verify) {
      s.tls = client_tls{.verify = false};
    }
    s.endpoint = ep;
    s.outbound_topic = options_.outbound_topic;
    s.deadletter_topic = options_.deadletter_topic;
    s.opts = options_;
    s.consortium = &consortium_;
    wanted.push_back(std::move(s));
    return {};
  };
  for (const auto& hp : consortium_.profiles) {
    for (const auto& ep : hp.profile.outbound()) {
      if (ep.kind() != cfg::ENDPOINT_KIND_WEBHOOK) continue;
      if (auto r = add(false, hp.hospital_id, ep, hp.file.string() + " outbound " + ep.id()); !r) {
        started_ = false;
        return r;
      }
    }
  }
  if (consortium_.consortium.has_patient_notifications() &&
      consortium_.consortium.patient_notifications().has_endpoint()) {
    const auto& ep = consortium_.consortium.patient_notifications().endpoint();
    if (auto r = add(true, std::string(patients_key), ep, consortium_.file.string() + " patient_notifications.endpoint");
        !r) {
      started_ = false;
      return r;
    }
  }
  std::set<std::string> groups;
  for (const auto& s : wanted) {
    if (!groups.insert(s.group).second) {
      started_ = false;
      return fail(errc::config_error, "two webhook destinations share the consumer group " + s.group, s.label);
    }
  }

  std::vector<std::shared_ptr<destination>> made;
  for (auto& s : wanted) {
    auto d = std::make_shared<destination>(std::move(s), executor_, bus_, registry_);
    if (auto r = d->subscribe(); !r) {
      started_ = false;
      return std::unexpected(r.error());
    }
    d->resolve_credentials();
    made.push_back(std::move(d));
  }
  destinations_ = std::move(made);
  for (auto& d : destinations_) {
    d->launch();
    logger().info("destination started", {log::field("destination", d->config().label),
                                          log::field("group", d->config().group),
                                          log::field("address", d->config().address.origin())});
  }
  return {};
}

void webhook_sender::stop() {
  for (auto& d : destinations_) d->request_stop();
}

asio::awaitable<void> webhook_sender::wait_stopped() {
  // Shutdown only: polling the destinations' flags keeps this free of a
  // cross-thread wake-up protocol.
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (;;) {
    const bool all = std::all_of(destinations_.begin(), destinations_.end(), [](const auto& d) { return d->stopped(); });
    if (all) break;
    boost::system::error_code ec;
    t.expires_after(milliseconds(10));
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  for (auto& d : destinations_) d->join();
}

void webhook_sender::stop(std::function<void()> done) {
  stop();
  asio::co_spawn(executor_, wait_stopped(), [done = std::move(done)](std::exception_ptr) {
    if (done) done();
  });
}

std::vector<destination_status> webhook_sender::status() const {
  std::vector<destination_status> out;
  for (const auto& d : destinations_) out.push_back(d->status());
  return out;
}

result<std::unique_ptr<webhook_sender>> start_webhook_senders(asio::any_io_executor executor, bus::bus& bus,
                                                              const config::loaded_consortium& consortium,
                                                              sender_options options, metrics::registry& registry) {
  auto sender = std::make_unique<webhook_sender>(std::move(executor), bus, consortium, std::move(options), registry);
  if (auto r = sender->start(); !r) return std::unexpected(r.error());
  return sender;
}

}  // namespace yilian::webhook
