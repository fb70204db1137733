#include "adapters/hl7v2/sender.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/hl7_time.h"
#include "adapters/hl7v2/mllp_client.h"
#include "adapters/hl7v2/render.h"
#include "engine/bus/publish.h"
#include "engine/core/log.h"
#include "engine/core/murmur2.h"
#include "yilian/events/v1/envelope.pb.h"
#include "engine/core/thread.h"

namespace yilian::hl7v2 {

namespace asio = boost::asio;
namespace ev = events::v1;
namespace cfg = config::v1;
using clock = std::chrono::steady_clock;

namespace {

const log::logger& sender_logger() {
  static const auto lg = log::get("hl7v2.sender");
  return lg;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 0x0f]);
  }
  return out;
}

std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// "host:port" or "[v6]:port".
bool split_address(std::string_view address, std::string& host, std::uint16_t& port) {
  std::string_view h;
  std::string_view p;
  if (address.starts_with('[')) {
    const auto close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':') return false;
    h = address.substr(1, close - 1);
    p = address.substr(close + 2);
  } else {
    const auto colon = address.rfind(':');
    if (colon == std::string_view::npos) return false;
    h = address.substr(0, colon);
    p = address.substr(colon + 1);
  }
  if (h.empty() || p.empty() || p.size() > 5) return false;
  unsigned value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  host = std::string(h);
  port = static_cast<std::uint16_t>(value);
  return true;
}

// The body message name ("ReportIssued"); empty without a body.
std::string body_name(const ev::Envelope& e) {
  if (e.body_case() == ev::Envelope::BODY_NOT_SET) return {};
  const auto* f = ev::Envelope::descriptor()->FindFieldByNumber(static_cast<int>(e.body_case()));
  return f != nullptr && f->message_type() != nullptr ? f->message_type()->name() : std::string{};
}

bool msa2_matches(std::string_view msa2, std::string_view sent) {
  if (msa2.empty() || msa2 == sent) return true;
  // Receivers holding MSH-10 to the v2.5 ST length (20) cut it.
  return msa2.size() >= 20 && sent.starts_with(msa2);
}

// One record handed from the poll thread to the destination's coroutine.
struct item {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string value;                  // kept for the dead letter's hash and size
  std::optional<ev::Envelope> event;  // nullopt: the value is not an Envelope
};

// What one attempt came to.
enum class attempt_kind { delivered, transient, negative };

struct attempt_result {
  attempt_kind kind = attempt_kind::transient;
  std::string outcome;   // "AA", "AR", "AE", "timeout", "unavailable", "stale-ack", "bad-ack", ...
  error err;             // for failures; message without the receiver's text
  std::string ack_text;  // the receiver's ERR-8 / MSA-3 text (may hold anything: never logged plainly)
};

}  // namespace

// --- destination -------------------------------------------------------------

class outbound_sender::destination : public std::enable_shared_from_this<destination> {
 public:
  struct settings {
    std::string hospital;
    std::string endpoint_id;
    std::string label;
    std::string group;
    std::string host;
    std::uint16_t port = 0;
    cfg::OutboundEndpoint endpoint;
    cfg::HospitalProfile profile;
    std::string outbound_topic;
    std::string deadletter_topic;
    std::optional<client_tls> tls;
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
                                   "Outbound messages acknowledged with AA/CA, per destination.", {"destination"})
                       .with({s_.label})),
        retries_(reg.add_counter("yilian_outbound_retries_total",
                                 "Outbound attempts after the first (AR, AE, timeouts, connection failures).",
                                 {"destination"})
                     .with({s_.label})),
        dead_letters_(reg.add_counter("yilian_outbound_dead_letters_total",
                                      "Outbound events given up on and published to the deadletter topic.",
                                      {"destination"})
                          .with({s_.label})),
        last_success_(reg.add_gauge("yilian_outbound_last_success_timestamp_seconds",
                                    "Unix time of the destination's last AA/CA (0 = never).", {"destination"})
                          .with({s_.label})) {
    status_.hospital = s_.hospital;
    status_.endpoint_id = s_.endpoint_id;
    status_.label = s_.label;
    status_.group = s_.group;
    status_.address = s_.endpoint.address();
    const auto ack_timeout = std::chrono::milliseconds(s_.endpoint.timeout_ms() > 0 ? s_.endpoint.timeout_ms() : 10000);
    client_ = std::make_unique<mllp_client>(strand_, client_options{.host = s_.host,
                                                                    .port = s_.port,
                                                                    .connect_timeout = s_.opts.connect_timeout,
                                                                    .ack_timeout = ack_timeout,
                                                                    .max_frame_bytes = s_.opts.max_ack_bytes,
                                                                    .tls = s_.tls});
    charset_ = s_.profile.default_charset() != cfg::CHARSET_UNSPECIFIED ? s_.profile.default_charset()
                                                                          : cfg::CHARSET_UTF8;
    auto zone = s_.profile.time_zone().empty() ? result<time_zone>(time_zone{}) : time_zone::load(s_.profile.time_zone());
    if (!zone) {
      sender_logger().warn("destination time zone not found: timestamps in UTC",
                           {log::field("destination", s_.label), log::field("error", zone.error().describe())});
      zone = time_zone{};
    }
    render_.version = s_.opts.version;
    render_.sending_application = s_.opts.sending_application;
    render_.sending_facility = s_.opts.sending_facility;
    render_.charset = charset_;
    render_.consortium = s_.consortium;
    render_.directory = s_.opts.directory;
    render_.utc_offset = [z = *zone](std::chrono::sys_seconds t) {
      return std::chrono::seconds{z.offset_at(t.time_since_epoch().count())};
    };
  }

  ~destination() {
    // The last reference may be the poll thread's own (its lambda's copy).
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();
      else thread_.join();
    }
  }

  const settings& config() const { return s_; }

  result<void> subscribe() {
    auto parts = bus_.partitions(s_.outbound_topic);
    if (!parts) return std::unexpected(parts.error());
    partition_ = partition_for_key(s_.hospital, std::max<std::int32_t>(1, *parts));
    auto c = bus_.subscribe(bus::consumer_options{.group = s_.group, .topics = {s_.outbound_topic}, .start = s_.opts.start});
    if (!c) return std::unexpected(c.error());
    consumer_ = std::move(*c);
    return {};
  }

  void launch() {
    thread_ = std::thread([self = shared_from_this()] {
      name_this_thread("yl-mllp-out");
      self->poll_loop();
    });
    asio::co_spawn(strand_, run(), [self = shared_from_this()](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          sender_logger().critical("destination coroutine failed", {log::field("destination", self->s_.label),
                                                                    log::field("error", std::string(ex.what()))});
        } catch (...) {
          sender_logger().critical("destination coroutine failed", {log::field("destination", self->s_.label)});
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
  // --- poll thread ---------------------------------------------------------

  struct partition_track {
    std::deque<std::int64_t> pending;  // deliverable records read, not yet delivered, in offset order
    std::int64_t read_upto = -1;       // highest offset read
    std::int64_t committed = -1;       // highest offset committed (inclusive)
  };

  bool routed(const ev::Envelope& e) const {
    const std::string name = body_name(e);
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
      // Not fatal: the records are delivered again after a restart
      // (at-least-once); the next loop tries again. A partition the group
      // moved to another member (Kafka, several engines) is forgotten: its new
      // owner delivers from the committed offset, so what is still queued
      // here may be delivered twice, never lost.
      if (commit_failures_++ % 50 == 0) {
        sender_logger().warn("commit failed", {log::field("destination", s_.label),
                                               log::field("error", r.error().describe()),
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
            sender_logger().warn("poll failed", {log::field("destination", s_.label),
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
          if (r.key != s_.hospital) continue;
          item it{.topic = r.topic, .partition = r.partition, .offset = r.offset, .value = {}, .event = std::nullopt};
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
  asio::awaitable<bool> sleep(std::chrono::milliseconds d) {
    if (stop_requested_.load()) co_return false;
    boost::system::error_code ec;
    backoff_timer_.expires_after(d);
    co_await backoff_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_return !stop_requested_.load();
  }

  std::chrono::milliseconds initial_backoff() const {
    return std::chrono::milliseconds(std::max<std::uint32_t>(1, s_.endpoint.retry().initial_backoff_ms()));
  }
  std::chrono::milliseconds max_backoff() const {
    return std::max(initial_backoff(), std::chrono::milliseconds(s_.endpoint.retry().max_backoff_ms()));
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

  asio::awaitable<attempt_result> attempt_once(const std::string& bytes, const std::string& control_id) {
    if (!client_->connected()) {
      auto c = co_await client_->connect();
      if (!c) {
        co_return attempt_result{.kind = attempt_kind::transient,
                                 .outcome = c.error().code == errc::timeout ? "connect-timeout" : "unavailable",
                                 .err = c.error(),
                                 .ack_text = {}};
      }
      connected_.store(true);
    }
    auto reply = co_await client_->exchange(bytes);
    if (!reply) {
      client_->close();
      connected_.store(false);
      const bool garbage = reply.error().code == errc::parse_error;  // a reply too large to be an ACK
      co_return attempt_result{.kind = garbage ? attempt_kind::negative : attempt_kind::transient,
                               .outcome = std::string(reply.error().code == errc::timeout ? "timeout"
                                                      : garbage                            ? "bad-ack"
                                                                                           : "unavailable"),
                               .err = reply.error(),
                               .ack_text = {}};
    }
    std::string text;
    if (auto decoded = decode_message(*reply, charset_); decoded) {
      text = std::move(decoded->utf8);
    } else {
      text = std::move(*reply);  // parse_ack keeps undecodable text as bytes
    }
    auto ack = parse_ack(text);
    if (!ack) {
      co_return attempt_result{
          .kind = attempt_kind::negative,
          .outcome = "bad-ack",
          .err = error::make(errc::parse_error, "the receiver's ACK cannot be read: " + ack.error().message,
                             ack.error().where),
          .ack_text = {}};
    }
    if (!msa2_matches(ack->acknowledged_control_id, control_id)) {
      // A late answer to an earlier attempt: this connection is out of step.
      client_->close();
      connected_.store(false);
      co_return attempt_result{.kind = attempt_kind::transient,
                               .outcome = "stale-ack",
                               .err = error::make(errc::unavailable, "the ACK answers another control id (MSA-2)",
                                                  "MSA-2"),
                               .ack_text = {}};
    }
    const std::string code(to_string(ack->code));
    if (is_positive(ack->code)) {
      co_return attempt_result{.kind = attempt_kind::delivered, .outcome = code, .err = {}, .ack_text = {}};
    }
    const bool reject = ack->code == ack_code::AR || ack->code == ack_code::CR;
    std::string msg = "the receiver answered " + code;
    if (!ack->error_code.empty()) msg += " (ERR-3 " + ack->error_code + ")";
    co_return attempt_result{
        .kind = reject ? attempt_kind::transient : attempt_kind::negative,
        .outcome = code,
        .err = error::make(reject ? errc::unavailable : errc::validation_failed, msg, "MSA-1"),
        .ack_text = ack->text};
  }

  // Delivers one record to its end: true when ACKed or dead-lettered, false
  // when stopped first (the record stays uncommitted).
  asio::awaitable<bool> deliver(const item& it) {
    // g++ 12 destroys temporaries inside a co_await expression twice: every
    // argument below is a named object.
    const std::string event_id = it.event ? it.event->event_id() : std::string{};
    const std::string none;
    set_status(event_id, 0, {}, {});
    if (!it.event) {
      const error why = error::make(errc::parse_error, "the record value is not a yilian.events.v1.Envelope", "value");
      const bool ok = co_await dead_letter(it, why, 0, none, none);
      co_return ok;
    }
    render_.now = std::chrono::system_clock::now();
    auto rendered = render(*it.event, s_.profile, render_);
    if (!rendered) {
      const error why = rendered.error();
      const bool ok = co_await dead_letter(it, why, 0, none, none);
      co_return ok;
    }
    auto bytes = encode_text(rendered->text, charset_);
    if (!bytes) {
      const error why = bytes.error();
      const bool ok = co_await dead_letter(it, why, 0, rendered->message_type, none);
      co_return ok;
    }

    auto backoff = initial_backoff();
    std::uint32_t attempts = 0;
    std::uint32_t negatives = 0;
    const std::uint32_t bound = std::max<std::uint32_t>(1, s_.endpoint.retry().max_attempts());
    for (;;) {
      if (stop_requested_.load()) co_return false;
      ++attempts;
      if (attempts > 1) retries_.inc();
      set_status(event_id, attempts, {}, {});
      auto r = co_await attempt_once(*bytes, rendered->control_id);
      if (stop_requested_.load() && r.kind != attempt_kind::delivered) co_return false;
      if (r.kind == attempt_kind::delivered) {
        delivered_.inc();
        const auto now = std::chrono::system_clock::now();
        last_success_.set(static_cast<double>(unix_ms(now)) / 1000.0);
        {
          std::lock_guard lock(mu_);
          status_.last_outcome = r.outcome;
          status_.last_success_unix_ms = unix_ms(now);
        }
        // One line per message at debug; a delivery that needed retries is
        // worth an info line (the destination recovered).
        sender_logger().write(attempts > 1 ? log::level::info : log::level::debug, "delivered",
                              {log::field("destination", s_.label), log::field("event_id", event_id),
                               log::field("attempt", attempts), log::field("outcome", r.outcome),
                               log::field("message_type", rendered->message_type)});
        co_return true;
      }
      set_status(event_id, attempts, r.outcome, r.err.describe());
      if (r.kind == attempt_kind::negative && ++negatives >= bound) {
        error e = r.err;
        if (!r.ack_text.empty()) e.message += ": " + r.ack_text;
        const bool ok = co_await dead_letter(it, e, attempts, rendered->message_type, rendered->control_id);
        co_return ok;
      }
      sender_logger().warn("delivery failed; retrying",
                           {log::field("destination", s_.label), log::field("event_id", event_id),
                            log::field("attempt", attempts), log::field("outcome", r.outcome),
                            log::field("error", r.err.describe()), log::redacted("ack_text", r.ack_text),
                            log::field("wait", backoff)});
      if (!co_await sleep(backoff)) co_return false;
      backoff = std::min(backoff * 2, max_backoff());
    }
  }

  asio::awaitable<bool> dead_letter(const item& it, const error& why, std::uint32_t attempts,
                                    const std::string& rendered_type, const std::string& rendered_control_id) {
    std::string message_type = rendered_type;
    std::string control_id = rendered_control_id;
    const std::string original_id = it.event ? it.event->event_id() : std::string{};
    const std::string raw_uri =
        "event://" + it.topic + "/" + std::to_string(it.partition) + "/" + std::to_string(it.offset);
    if (message_type.empty() && it.event) {
      if (auto t = message_type_for(*it.event, render_); t) message_type = *t;
    }
    if (control_id.empty()) control_id = original_id.substr(0, 199);

    ev::Envelope env;
    env.set_event_id(sha256_hex("outbound|" + s_.label + "|" + (original_id.empty() ? raw_uri : original_id)));
    env.set_type("yilian.events.v1.DeadLetter");
    env.set_schema_version(1);
    const auto now = to_timestamp(std::chrono::system_clock::now());
    *env.mutable_occurred_at() = now;
    *env.mutable_recorded_at() = now;
    env.mutable_source()->set_hospital(s_.hospital);
    env.mutable_source()->set_system("hl7v2.sender");
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
    dl->set_source_hospital(s_.hospital);
    dl->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    dl->set_control_id(control_id);
    dl->set_message_type(message_type);
    dl->set_retriable(why.retriable);
    dl->set_attempts(attempts);
    dl->set_original_event_id(original_id);
    dl->set_original_topic(it.topic);
    const std::string value = env.SerializeAsString();

    auto backoff = initial_backoff();
    for (;;) {
      bus::message msg{.topic = s_.deadletter_topic, .key = s_.hospital, .value = value, .headers = {}, .timestamp_ms = 0};
      auto published = co_await bus::async_publish(bus_, std::move(msg), asio::use_awaitable);
      if (published) break;
      sender_logger().error("dead letter not published; retrying",
                            {log::field("destination", s_.label), log::field("event_id", original_id),
                             log::field("error", published.error().describe()), log::field("wait", backoff)});
      if (!co_await sleep(backoff)) co_return false;
      backoff = std::min(backoff * 2, max_backoff());
    }
    dead_letters_.inc();
    {
      std::lock_guard lock(mu_);
      status_.last_outcome = "dead-lettered";
      status_.last_error = why.describe();
    }
    sender_logger().warn("dead-lettered", {log::field("destination", s_.label), log::field("event_id", original_id),
                                           log::field("attempts", attempts),
                                           log::field("error_code", to_string(why.code)),
                                           log::field("record", raw_uri)});
    co_return true;
  }

  settings s_;
  asio::strand<asio::any_io_executor> strand_;
  bus::bus& bus_;
  std::unique_ptr<bus::consumer> consumer_;  // poll thread only (after subscribe)
  std::thread thread_;

  // Coroutine state (strand_ only).
  asio::steady_timer wake_;
  asio::steady_timer backoff_timer_;
  std::unique_ptr<mllp_client> client_;
  render_options render_;
  cfg::Charset charset_ = cfg::CHARSET_UTF8;

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

// --- outbound_sender ---------------------------------------------------------

outbound_sender::outbound_sender(asio::any_io_executor executor, bus::bus& bus,
                                 const config::loaded_consortium& consortium, sender_options options,
                                 metrics::registry& registry)
    : executor_(std::move(executor)),
      bus_(bus),
      consortium_(consortium),
      options_(std::move(options)),
      registry_(registry) {
  if (options_.outbound_topic.empty()) options_.outbound_topic = std::string(config::topic_name(ev::TOPIC_OUTBOUND));
  if (options_.deadletter_topic.empty()) {
    options_.deadletter_topic = std::string(config::topic_name(ev::TOPIC_DEADLETTER));
  }
  if (options_.sending_facility.empty()) options_.sending_facility = consortium_.consortium.id();
  if (options_.queue_capacity == 0) options_.queue_capacity = 1;
}

outbound_sender::~outbound_sender() {
  stop();
  // Give running coroutines a moment to finish on their io_context; a
  // destination whose coroutine cannot finish (io_context stopped) is forced.
  const auto deadline = clock::now() + std::chrono::seconds(2);
  for (auto& d : destinations_) {
    while (!d->stopped() && clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    d->force_stop();
    d->join();
  }
}

std::string outbound_sender::group_name(std::string_view prefix, std::string_view hospital,
                                        std::string_view endpoint_id) {
  std::string g;
  if (!prefix.empty()) g = std::string(prefix) + "-";
  g += "yilian-outbound-";
  g += hospital;
  g += "-";
  g += endpoint_id;
  return g;
}

result<void> outbound_sender::start() {
  if (started_.exchange(true)) return fail(errc::invalid_argument, "the outbound sender was started already");
  std::vector<std::shared_ptr<destination>> made;
  std::set<std::string> groups;
  for (const auto& hp : consortium_.profiles) {
    for (const auto& ep : hp.profile.outbound()) {
      if (ep.kind() != cfg::ENDPOINT_KIND_MLLP) continue;
      destination::settings s;
      s.hospital = hp.hospital_id;
      s.endpoint_id = ep.id();
      s.label = hp.hospital_id + "/" + ep.id();
      s.group = group_name(options_.group_prefix, hp.hospital_id, ep.id());
      if (!groups.insert(s.group).second) {
        started_ = false;
        return fail(errc::config_error, "two outbound destinations share the consumer group " + s.group,
                    hp.file.string());
      }
      if (!split_address(ep.address(), s.host, s.port)) {
        started_ = false;
        return fail(errc::config_error, "outbound address '" + ep.address() + "' is not host:port",
                    hp.file.string() + " outbound " + ep.id());
      }
      s.endpoint = ep;
      s.profile = hp.profile;
      s.outbound_topic = options_.outbound_topic;
      s.deadletter_topic = options_.deadletter_topic;
      if (ep.has_tls()) {
        const auto& t = ep.tls();
        s.tls = client_tls{
            .ca_file = t.ca_file().empty() ? std::string{} : consortium_.resolve(t.ca_file()).string(),
            .cert_file = t.cert_file().empty() ? std::string{} : consortium_.resolve(t.cert_file()).string(),
            .key_file = t.key_file().empty() ? std::string{} : consortium_.resolve(t.key_file()).string(),
            .server_name = t.server_name(),
            .verify = options_.tls_verify};
      }
      s.opts = options_;
      s.consortium = &consortium_;
      auto d = std::make_shared<destination>(std::move(s), executor_, bus_, registry_);
      if (auto r = d->subscribe(); !r) {
        started_ = false;
        return std::unexpected(r.error());
      }
      made.push_back(std::move(d));
    }
  }
  destinations_ = std::move(made);
  for (auto& d : destinations_) {
    d->launch();
    sender_logger().info("destination started", {log::field("destination", d->config().label),
                                                 log::field("group", d->config().group),
                                                 log::field("address", d->config().endpoint.address())});
  }
  return {};
}

void outbound_sender::stop() {
  for (auto& d : destinations_) d->request_stop();
}

asio::awaitable<void> outbound_sender::wait_stopped() {
  // Shutdown only: polling the destinations' flags keeps this free of a
  // cross-thread wake-up protocol.
  asio::steady_timer t(co_await asio::this_coro::executor);
  for (;;) {
    const bool all = std::all_of(destinations_.begin(), destinations_.end(), [](const auto& d) { return d->stopped(); });
    if (all) break;
    boost::system::error_code ec;
    t.expires_after(std::chrono::milliseconds(10));
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  for (auto& d : destinations_) d->join();
}

std::vector<destination_status> outbound_sender::status() const {
  std::vector<destination_status> out;
  for (const auto& d : destinations_) out.push_back(d->status());
  return out;
}

}  // namespace yilian::hl7v2
