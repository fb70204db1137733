#include "engine/bus/kafka_bus.h"
#include "engine/core/thread.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <tuple>
#include <unordered_map>

namespace yilian::bus {

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------
// Owners for librdkafka's C handles.

struct rk_deleter {
  void operator()(rd_kafka_t* p) const noexcept { rd_kafka_destroy(p); }
};
struct conf_deleter {
  void operator()(rd_kafka_conf_t* p) const noexcept { rd_kafka_conf_destroy(p); }
};
struct topic_deleter {
  void operator()(rd_kafka_topic_t* p) const noexcept { rd_kafka_topic_destroy(p); }
};
struct queue_deleter {
  void operator()(rd_kafka_queue_t* p) const noexcept { rd_kafka_queue_destroy(p); }
};
struct event_deleter {
  void operator()(rd_kafka_event_t* p) const noexcept { rd_kafka_event_destroy(p); }
};
struct tpl_deleter {
  void operator()(rd_kafka_topic_partition_list_t* p) const noexcept { rd_kafka_topic_partition_list_destroy(p); }
};
struct headers_deleter {
  void operator()(rd_kafka_headers_t* p) const noexcept { rd_kafka_headers_destroy(p); }
};
struct admin_options_deleter {
  void operator()(rd_kafka_AdminOptions_t* p) const noexcept { rd_kafka_AdminOptions_destroy(p); }
};
struct new_topic_deleter {
  void operator()(rd_kafka_NewTopic_t* p) const noexcept { rd_kafka_NewTopic_destroy(p); }
};
struct metadata_deleter {
  void operator()(const rd_kafka_metadata_t* p) const noexcept { rd_kafka_metadata_destroy(p); }
};
struct message_deleter {
  void operator()(rd_kafka_message_t* p) const noexcept { rd_kafka_message_destroy(p); }
};
struct error_deleter {
  void operator()(rd_kafka_error_t* p) const noexcept { rd_kafka_error_destroy(p); }
};

using rk_ptr = std::unique_ptr<rd_kafka_t, rk_deleter>;
using conf_ptr = std::unique_ptr<rd_kafka_conf_t, conf_deleter>;
using topic_ptr = std::unique_ptr<rd_kafka_topic_t, topic_deleter>;
using queue_ptr = std::unique_ptr<rd_kafka_queue_t, queue_deleter>;
using event_ptr = std::unique_ptr<rd_kafka_event_t, event_deleter>;
using tpl_ptr = std::unique_ptr<rd_kafka_topic_partition_list_t, tpl_deleter>;
using headers_ptr = std::unique_ptr<rd_kafka_headers_t, headers_deleter>;
using admin_options_ptr = std::unique_ptr<rd_kafka_AdminOptions_t, admin_options_deleter>;
using new_topic_ptr = std::unique_ptr<rd_kafka_NewTopic_t, new_topic_deleter>;
using metadata_ptr = std::unique_ptr<const rd_kafka_metadata_t, metadata_deleter>;
using message_ptr = std::unique_ptr<rd_kafka_message_t, message_deleter>;
using error_ptr = std::unique_ptr<rd_kafka_error_t, error_deleter>;

// ---------------------------------------------------------------------------
// Small helpers.

int to_ms(milliseconds d) noexcept {
  const auto c = d.count();
  if (c <= 0) return 0;
  if (c > std::numeric_limits<int>::max()) return std::numeric_limits<int>::max();
  return static_cast<int>(c);
}

int remaining_ms(clock::time_point deadline) noexcept {
  return to_ms(std::chrono::ceil<milliseconds>(deadline - clock::now()));
}

std::string where_of(std::string_view topic, std::int32_t partition) {
  std::string w{topic};
  if (partition >= 0) {
    w += '/';
    w += std::to_string(partition);
  }
  return w;
}

std::string err_text(rd_kafka_resp_err_t err) {
  std::string s = rd_kafka_err2name(err);
  s += ": ";
  s += rd_kafka_err2str(err);
  return s;
}

// What a librdkafka client's opaque points to: lives longer than the client.
struct client_context {
  std::function<void(int, std::string_view)> log;
  // Consumers: consumer_options::start_timestamp_ms (< 0: unused) and the
  // bound for the lookups the rebalance callback makes for it.
  std::int64_t start_timestamp_ms = -1;
  int lookup_timeout_ms = 10'000;
};

void log_callback(const rd_kafka_t* rk, int level, const char* facility, const char* line) {
  const auto* ctx = static_cast<const client_context*>(rd_kafka_opaque(rk));
  if (ctx == nullptr || !ctx->log) return;
  std::string text = facility != nullptr ? facility : "";
  text += ": ";
  text += line != nullptr ? line : "";
  ctx->log(level, text);
}

// ---------------------------------------------------------------------------
// Configuration.

// Properties the bus sets itself because its contract depends on them; an
// override in kafka_options::properties is a configuration error.
constexpr std::array<std::string_view, 18> reserved_properties = {
    "bootstrap.servers",  "metadata.broker.list",  "client.id",
    "enable.idempotence", "acks",                  "request.required.acks",
    "partitioner",        "message.timeout.ms",    "delivery.timeout.ms",
    "queue.buffering.max.messages", "transactional.id", "group.id",
    "enable.auto.commit", "enable.auto.offset.store", "auto.offset.reset",
    "enable.partition.eof", "dr_msg_cb", "dr_cb",
};

bool is_reserved(std::string_view name) noexcept {
  return std::find(reserved_properties.begin(), reserved_properties.end(), name) != reserved_properties.end();
}

// Tuning defaults for the producer; options.properties may override them.
// (Durability settings are not here: they are not negotiable.)
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> producer_tuning = {{
    // Publishers here are closed loops (an adapter waits for durability
    // before it ACKs), so lingering only adds latency: on one local broker
    // with 1 KiB records, linger.ms=0 gave several times the throughput of
    // 1 ms for one publisher, and more at 16 and 256 too. Under load batches
    // still form while the idempotent producer's (at most 5) requests per
    // broker are in flight.
    {"linger.ms", "0"},
    {"socket.nagle.disable", "true"},
    // Keep leaders' metadata fresh without hammering a small cluster.
    {"topic.metadata.refresh.interval.ms", "60000"},
}};

result<void> set_property(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char errstr[512] = {};
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    std::string why = errstr;
    if (is_secret_property(name) && !value.empty()) {
      for (auto pos = why.find(value); pos != std::string::npos; pos = why.find(value)) {
        why.replace(pos, value.size(), "********");
      }
    }
    return fail(errc::config_error, "librdkafka property " + name + "=" + masked_value(name, value) + ": " + why,
                "kafka");
  }
  return {};
}

result<void> set_user_properties(rd_kafka_conf_t* conf, const std::map<std::string, std::string>& props,
                                 std::string_view which) {
  for (const auto& [name, value] : props) {
    if (is_reserved(name)) {
      return fail(errc::config_error,
                  "librdkafka property " + name + " is set by the Kafka bus itself and cannot be overridden in " +
                      std::string(which),
                  "kafka");
    }
    if (auto r = set_property(conf, name, value); !r) return r;
  }
  return {};
}

result<void> validate(const kafka_options& o) {
  if (o.brokers.empty()) return fail(errc::config_error, "kafka brokers (bootstrap.servers) is empty", "kafka");
  if (o.publish_timeout < milliseconds(1)) return fail(errc::config_error, "publish_timeout must be positive", "kafka");
  if (o.max_in_flight == 0 || o.max_in_flight > static_cast<std::size_t>(std::numeric_limits<int>::max() / 2)) {
    return fail(errc::config_error, "max_in_flight must be in 1.." + std::to_string(std::numeric_limits<int>::max() / 2),
                "kafka");
  }
  if (o.request_timeout < milliseconds(1)) return fail(errc::config_error, "request_timeout must be positive", "kafka");
  if (o.topic_ready_timeout < milliseconds(0)) {
    return fail(errc::config_error, "topic_ready_timeout must not be negative", "kafka");
  }
  return {};
}

result<conf_ptr> producer_conf(const kafka_options& o) {
  if (auto v = validate(o); !v) return std::unexpected(v.error());
  conf_ptr conf(rd_kafka_conf_new());
  const std::string timeout = std::to_string(o.publish_timeout.count());
  const std::pair<std::string, std::string> contract[] = {
      {"bootstrap.servers", o.brokers},
      {"client.id", o.client_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"partitioner", "murmur2_random"},
      {"message.timeout.ms", timeout},
      {"queue.buffering.max.messages", std::to_string(o.max_in_flight * 2)},
  };
  for (const auto& [name, value] : contract) {
    if (auto r = set_property(conf.get(), name, value); !r) return std::unexpected(r.error());
  }
  for (const auto& [name, value] : producer_tuning) {
    if (auto r = set_property(conf.get(), std::string(name), std::string(value)); !r) return std::unexpected(r.error());
  }
  // A topic the cluster does not have fails its publishes with not_found (as on
  // the embedded log) well before the publish timeout, instead of after
  // librdkafka's default 30 s. ensure_topics() waits until new topics are
  // visible, so this does not race with topics the bus created itself.
  const auto propagation = std::clamp<std::int64_t>(o.publish_timeout.count() / 2, 1, 5000);
  if (auto r = set_property(conf.get(), "topic.metadata.propagation.max.ms", std::to_string(propagation)); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = set_user_properties(conf.get(), o.properties, "properties"); !r) return std::unexpected(r.error());
  // A property from options.properties may not lower the timeout below linger; librdkafka checks the rest at rd_kafka_new.
  rd_kafka_conf_set_events(conf.get(), RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
  return conf;
}

result<conf_ptr> consumer_conf(const kafka_options& o, const consumer_options& c) {
  if (auto v = validate(o); !v) return std::unexpected(v.error());
  if (c.group.empty()) return fail(errc::invalid_argument, "consumer group is empty", "kafka");
  conf_ptr conf(rd_kafka_conf_new());
  const std::pair<std::string, std::string> contract[] = {
      {"bootstrap.servers", o.brokers},
      {"client.id", o.client_id},
      {"group.id", c.group},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"auto.offset.reset", c.start == start_from::earliest || c.start_timestamp_ms >= 0 ? "earliest" : "latest"},
      {"socket.nagle.disable", "true"},
  };
  for (const auto& [name, value] : contract) {
    if (auto r = set_property(conf.get(), name, value); !r) return std::unexpected(r.error());
  }
  if (auto r = set_user_properties(conf.get(), o.properties, "properties"); !r) return std::unexpected(r.error());
  if (auto r = set_user_properties(conf.get(), o.consumer_properties, "consumer_properties"); !r) {
    return std::unexpected(r.error());
  }
  return conf;
}

std::vector<std::pair<std::string, std::string>> dump_config(rd_kafka_conf_t* conf) {
  std::map<std::string, std::string> all;
  auto take = [&](const char** arr, std::size_t n) {
    for (std::size_t i = 0; i + 1 < n; i += 2) {
      const std::string name = arr[i] != nullptr ? arr[i] : "";
      all[name] = masked_value(name, arr[i + 1] != nullptr ? arr[i + 1] : "");
    }
  };
  std::size_t n = 0;
  const char** arr = rd_kafka_conf_dump(conf, &n);
  take(arr, n);
  rd_kafka_conf_dump_free(arr, n);
  if (rd_kafka_topic_conf_t* tconf = rd_kafka_conf_get_default_topic_conf(conf)) {
    arr = rd_kafka_topic_conf_dump(tconf, &n);
    take(arr, n);
    rd_kafka_conf_dump_free(arr, n);
  }
  return {all.begin(), all.end()};
}

// ---------------------------------------------------------------------------
// Consumer.

record to_record(const rd_kafka_message_t& m) {
  record r;
  r.topic = rd_kafka_topic_name(m.rkt);
  r.partition = m.partition;
  r.offset = m.offset;
  if (m.key != nullptr) r.key.assign(static_cast<const char*>(m.key), m.key_len);
  if (m.payload != nullptr) r.value.assign(static_cast<const char*>(m.payload), m.len);
  rd_kafka_timestamp_type_t tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  const std::int64_t ts = rd_kafka_message_timestamp(&m, &tstype);
  r.timestamp_ms = ts < 0 ? 0 : ts;
  rd_kafka_headers_t* hdrs = nullptr;
  // rd_kafka_message_headers() parses lazily and keeps ownership.
  if (rd_kafka_message_headers(&m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != nullptr) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      r.headers.push_back(header{.key = name, .value = value != nullptr
                                                           ? std::string(static_cast<const char*>(value), size)
                                                           : std::string()});
    }
  }
  return r;
}

// consumer_options::start_timestamp_ms: before assigning, partitions the
// group has no committed offset for get the offset of their first record at
// or after the timestamp (or their end when there is none). If a lookup
// fails, those partitions keep auto.offset.reset, which is then "earliest":
// reading more than asked, never less.
void start_at_timestamp(rd_kafka_t* rk, rd_kafka_topic_partition_list_t* partitions, const client_context& ctx) {
  tpl_ptr committed(rd_kafka_topic_partition_list_copy(partitions));
  if (rd_kafka_committed(rk, committed.get(), ctx.lookup_timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  tpl_ptr query(rd_kafka_topic_partition_list_new(committed->cnt));
  for (int i = 0; i < committed->cnt; ++i) {
    const auto& e = committed->elems[i];
    if (e.err == RD_KAFKA_RESP_ERR_NO_ERROR && e.offset < 0) {
      rd_kafka_topic_partition_list_add(query.get(), e.topic, e.partition)->offset = ctx.start_timestamp_ms;
    }
  }
  if (query->cnt == 0) return;
  if (rd_kafka_offsets_for_times(rk, query.get(), ctx.lookup_timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  for (int i = 0; i < query->cnt; ++i) {
    const auto& q = query->elems[i];
    if (q.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    auto* target = rd_kafka_topic_partition_list_find(partitions, q.topic, q.partition);
    if (target == nullptr) continue;
    target->offset = q.offset;
    if (q.offset < 0) {
      // No record that late: start at the end as it is now (OFFSET_END would
      // be resolved only when fetching starts, skipping what arrives meanwhile).
      std::int64_t low = 0;
      std::int64_t high = 0;
      target->offset = rd_kafka_query_watermark_offsets(rk, q.topic, q.partition, &low, &high,
                                                        ctx.lookup_timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR
                           ? high
                           : RD_KAFKA_OFFSET_END;
    }
  }
}

void rebalance_callback(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                        void* opaque) {
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (const auto* ctx = static_cast<const client_context*>(opaque); ctx != nullptr && ctx->start_timestamp_ms >= 0) {
      start_at_timestamp(rk, partitions, *ctx);
    }
    if (cooperative) {
      error_ptr e(rd_kafka_incremental_assign(rk, partitions));
    } else {
      rd_kafka_assign(rk, partitions);
    }
  } else {
    // Revoked (or an error during rebalance): give everything up. What was
    // processed but not committed is delivered again to the next owner.
    if (cooperative) {
      error_ptr e(rd_kafka_incremental_unassign(rk, partitions));
    } else {
      rd_kafka_assign(rk, nullptr);
    }
  }
}

class kafka_consumer final : public consumer {
 public:
  kafka_consumer(std::unique_ptr<client_context> ctx, rk_ptr rk, milliseconds request_timeout)
      : ctx_(std::move(ctx)), rk_(std::move(rk)), request_timeout_(request_timeout) {}

  ~kafka_consumer() override { close(); }

  result<std::vector<record>> poll(milliseconds timeout, std::size_t max) override {
    if (closed_) return fail(errc::cancelled, "consumer is closed", "kafka");
    if (pending_error_) {
      error e = std::move(*pending_error_);
      pending_error_.reset();
      return std::unexpected(std::move(e));
    }
    std::vector<record> out;
    if (max == 0) return out;
    const auto deadline = clock::now() + timeout;
    while (out.size() < max) {
      const int wait = out.empty() ? remaining_ms(deadline) : 0;
      message_ptr m(rd_kafka_consumer_poll(rk_.get(), wait));
      if (!m) {
        if (out.empty() && clock::now() < deadline) continue;
        break;
      }
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
        const char* topic = m->rkt != nullptr ? rd_kafka_topic_name(m->rkt) : "";
        const bool fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
        std::string detail = rd_kafka_message_errstr(m.get());
        if (fatal) {
          char buf[512] = {};
          const auto code = rd_kafka_fatal_error(rk_.get(), buf, sizeof buf);
          detail = std::string(rd_kafka_err2name(code)) + ": " + buf;
        }
        error e = error_from_kafka(m->err, detail, where_of(topic, m->partition), fatal);
        // Transient conditions (a broker restarting, a coordinator moving) are
        // librdkafka's to retry; only what needs the caller is surfaced.
        if (e.retriable) continue;
        if (out.empty()) return std::unexpected(std::move(e));
        pending_error_ = std::move(e);
        break;
      }
      out.push_back(to_record(*m));
    }
    return out;
  }

  result<void> commit(std::span<const record> processed) override {
    if (closed_) return fail(errc::cancelled, "consumer is closed", "kafka");
    if (processed.empty()) return {};
    std::map<std::pair<std::string, std::int32_t>, std::int64_t> next;
    for (const record& r : processed) {
      auto [it, inserted] = next.try_emplace({r.topic, r.partition}, r.offset + 1);
      if (!inserted) it->second = std::max(it->second, r.offset + 1);
    }
    tpl_ptr list(rd_kafka_topic_partition_list_new(static_cast<int>(next.size())));
    for (const auto& [tp, offset] : next) {
      rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset = offset;
    }
    const rd_kafka_resp_err_t err = rd_kafka_commit(rk_.get(), list.get(), 0 /* synchronous */);
    for (int i = 0; i < list->cnt; ++i) {
      const auto& e = list->elems[i];
      if (e.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return std::unexpected(error_from_kafka(e.err, "commit of offset " + std::to_string(e.offset) + " failed",
                                                where_of(e.topic, e.partition)));
      }
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::unexpected(error_from_kafka(err, "commit failed", "kafka"));
    }
    return {};
  }

  std::vector<std::pair<std::string, std::int32_t>> assignment() override {
    std::vector<std::pair<std::string, std::int32_t>> out;
    if (closed_) return out;
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (rd_kafka_assignment(rk_.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
    tpl_ptr list(raw);
    for (int i = 0; i < list->cnt; ++i) out.emplace_back(list->elems[i].topic, list->elems[i].partition);
    std::sort(out.begin(), out.end());
    return out;
  }

  result<std::vector<partition_lag>> lag() override {
    if (closed_) return fail(errc::cancelled, "consumer is closed", "kafka");
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (auto err = rd_kafka_assignment(rk_.get(), &raw); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::unexpected(error_from_kafka(err, "could not read the assignment", "kafka"));
    }
    tpl_ptr list(raw);
    std::vector<partition_lag> out;
    if (list->cnt == 0) return out;
    const auto deadline = clock::now() + request_timeout_;
    if (auto err = rd_kafka_committed(rk_.get(), list.get(), remaining_ms(deadline));
        err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::unexpected(error_from_kafka(err, "could not read committed offsets", "kafka"));
    }
    for (int i = 0; i < list->cnt; ++i) {
      const auto& e = list->elems[i];
      if (e.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return std::unexpected(
            error_from_kafka(e.err, "could not read the committed offset", where_of(e.topic, e.partition)));
      }
      std::int64_t low = 0;
      std::int64_t high = 0;
      if (auto err = rd_kafka_query_watermark_offsets(rk_.get(), e.topic, e.partition, &low, &high,
                                                      std::max(1, remaining_ms(deadline)));
          err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return std::unexpected(error_from_kafka(err, "could not read the end offset", where_of(e.topic, e.partition)));
      }
      out.push_back(partition_lag{.topic = e.topic, .partition = e.partition,
                                  .committed = e.offset >= 0 ? e.offset : -1, .end = high});
    }
    std::sort(out.begin(), out.end(), [](const partition_lag& a, const partition_lag& b) {
      return std::tie(a.topic, a.partition) < std::tie(b.topic, b.partition);
    });
    return out;
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    // Leaves the group (serving the final revoke) so the partitions move on
    // at once — but within a bound: after a broker restart a LeaveGroup can
    // sit behind a blocked request for seconds per consumer, and an engine
    // with a dozen consumers must still stop promptly. If the leave does not
    // finish in time the handle goes without it; the group then reassigns
    // the partitions after the session timeout, as after a crash (nothing
    // uncommitted is lost: it is delivered again).
    //
    // The close queue is served with the event API, not with callbacks: the
    // consumer queue is forwarded to it, so fetched messages not yet polled
    // arrive there too, and a callback poll cannot serve those (librdkafka
    // asserts). They are dropped unprocessed and uncommitted, so the next
    // owner gets them; the final revoke is applied here.
    queue_ptr q(rd_kafka_queue_new(rk_.get()));
    if (error_ptr e(rd_kafka_consumer_close_queue(rk_.get(), q.get())); e) {
      q.reset();
      rd_kafka_consumer_close(rk_.get());
      return;
    }
    const auto deadline = clock::now() + std::min(request_timeout_, milliseconds(2000));
    while (rd_kafka_consumer_closed(rk_.get()) == 0 && clock::now() < deadline) {
      event_ptr ev(rd_kafka_queue_poll(q.get(), std::clamp(remaining_ms(deadline), 1, 50)));
      if (ev && rd_kafka_event_type(ev.get()) == RD_KAFKA_EVENT_REBALANCE) {
        rebalance_callback(rk_.get(), rd_kafka_event_error(ev.get()), rd_kafka_event_topic_partition_list(ev.get()),
                           ctx_.get());
      }
    }
    q.reset();
    if (rd_kafka_consumer_closed(rk_.get()) == 0) {
      rd_kafka_destroy_flags(rk_.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
  }

 private:
  std::unique_ptr<client_context> ctx_;  // outlives rk_ (declared first, destroyed last)
  rk_ptr rk_;
  milliseconds request_timeout_;
  bool closed_ = false;
  std::optional<error> pending_error_;
};

// Per publish, owned by librdkafka (the message's opaque) until its delivery report.
struct pending_publish {
  publish_handler done;
  std::string value;  // the payload librdkafka sends without copying
};

}  // namespace

// ---------------------------------------------------------------------------
// Error mapping: the one place that turns librdkafka codes into yilian errors.

error error_from_kafka(int code, std::string_view detail, std::string where, bool fatal, int retriable_hint) {
  const auto err = static_cast<rd_kafka_resp_err_t>(code);
  errc c = errc::internal;
  std::string message;
  if (fatal || err == RD_KAFKA_RESP_ERR__FATAL) {
    message = "fatal: ";
    message += detail.empty() ? err_text(err) : std::string(detail);
    message += " (the Kafka client must be recreated)";
    return error{.code = errc::unavailable, .message = std::move(message), .where = std::move(where),
                 .retriable = false};
  }
  switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      c = errc::timeout;
      break;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__NODE_UPDATE:
    case RD_KAFKA_RESP_ERR__RETRY:
    case RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
      c = errc::unavailable;
      break;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      c = errc::overloaded;
      break;
    case RD_KAFKA_RESP_ERR_INVALID_MSG:  // CRC mismatch on the way: resend
      c = errc::io_error;
      break;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__DESTROY:
      c = errc::cancelled;
      break;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__NO_OFFSET:
    case RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND:
      c = errc::not_found;
      break;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
      c = errc::already_exists;
      break;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
    case RD_KAFKA_RESP_ERR__KEY_SERIALIZATION:
    case RD_KAFKA_RESP_ERR__VALUE_SERIALIZATION:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICA_ASSIGNMENT:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
    case RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE:
      c = errc::invalid_argument;
      break;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
      c = errc::permission_denied;
      break;
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
      c = errc::unauthenticated;
      break;
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST:
    case RD_KAFKA_RESP_ERR__FENCED:
      // The group moved on: these partitions now belong to another member,
      // which will get the uncommitted records again.
      c = errc::conflict;
      break;
    case RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
      // The idempotent producer recovers by bumping its epoch (KIP-360); the
      // record it failed can be published again.
      c = errc::unavailable;
      break;
    case RD_KAFKA_RESP_ERR__CONFLICT:
    case RD_KAFKA_RESP_ERR__STATE:
    case RD_KAFKA_RESP_ERR__INCONSISTENT:
    case RD_KAFKA_RESP_ERR__GAPLESS_GUARANTEE:
    case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER:  // librdkafka raises a fatal error with it
      c = errc::internal;
      break;
    case RD_KAFKA_RESP_ERR__FS:
    case RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE:
      c = errc::io_error;
      break;
    case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
      c = errc::config_error;
      break;
    default:
      c = errc::internal;
      break;
  }
  message = detail.empty() ? err_text(err) : std::string(detail) + " (" + rd_kafka_err2name(err) + ")";
  error e = error::make(c, std::move(message), std::move(where));
  if (retriable_hint >= 0) e.retriable = retriable_hint != 0;
  return e;
}

// ---------------------------------------------------------------------------
// Secrets.

bool is_secret_property(std::string_view name) noexcept {
  if (name.find("password") != std::string_view::npos) return true;
  if (name.find("secret") != std::string_view::npos) return true;
  constexpr std::string_view exact[] = {"ssl.key.pem", "ssl_key", "ssl.keystore.password", "sasl.oauthbearer.config",
                                        "sasl.jaas.config", "ssl.certificate.pem.key"};
  return std::find(std::begin(exact), std::end(exact), name) != std::end(exact);
}

std::string masked_value(std::string_view name, std::string_view value) {
  if (is_secret_property(name) && !value.empty()) return "********";
  return std::string(value);
}

std::string render_config(const std::vector<std::pair<std::string, std::string>>& config) {
  std::string out;
  for (const auto& [name, value] : config) {
    out += name;
    out += '=';
    out += masked_value(name, value);
    out += '\n';
  }
  return out;
}

result<std::vector<std::pair<std::string, std::string>>> effective_producer_config(const kafka_options& options) {
  auto conf = producer_conf(options);
  if (!conf) return std::unexpected(conf.error());
  return dump_config(conf->get());
}

result<std::vector<std::pair<std::string, std::string>>> effective_consumer_config(const kafka_options& options,
                                                                                   const consumer_options& consumer) {
  auto conf = consumer_conf(options, consumer);
  if (!conf) return std::unexpected(conf.error());
  return dump_config(conf->get());
}

// ---------------------------------------------------------------------------
// The bus.

struct kafka_bus::impl {
  explicit impl(kafka_options o) : opts(std::move(o)) { ctx.log = opts.log; }

  kafka_options opts;
  client_context ctx;  // the producer's opaque; outlives rk
  std::vector<std::pair<std::string, std::string>> config;

  // Handle order matters: members are destroyed in reverse, so topic handles
  // and the queue go before the client they belong to.
  rk_ptr rk;
  queue_ptr main_queue;
  std::shared_mutex topics_mu;
  std::unordered_map<std::string, topic_ptr> topics;

  // in_flight: handed to librdkafka, no delivery report yet (the bound).
  // outstanding: every publish whose handler has not returned yet (flush waits for it).
  std::atomic<std::size_t> in_flight{0};
  std::atomic<std::size_t> outstanding{0};
  std::atomic<bool> closing{false};
  std::atomic<bool> stopping{false};
  std::atomic<bool> has_fatal{false};
  mutable std::mutex fatal_mu;
  std::optional<error> fatal;

  // Completions decided before librdkafka saw the publish; run on the poll thread.
  std::mutex deferred_mu;
  std::vector<std::pair<publish_handler, error>> deferred;

  std::mutex idle_mu;
  std::condition_variable idle_cv;
  std::atomic<int> idle_waiters{0};

  std::thread poller;
  std::atomic<std::thread::id> poller_id{};

  rd_kafka_topic_t* topic(const std::string& name) {
    {
      std::shared_lock lock(topics_mu);
      if (auto it = topics.find(name); it != topics.end()) return it->second.get();
    }
    std::unique_lock lock(topics_mu);
    if (auto it = topics.find(name); it != topics.end()) return it->second.get();
    topic_ptr handle(rd_kafka_topic_new(rk.get(), name.c_str(), nullptr));
    if (!handle) return nullptr;
    return topics.emplace(name, std::move(handle)).first->second.get();
  }

  void defer(publish_handler done, error e) {
    outstanding.fetch_add(1, std::memory_order_relaxed);
    bool was_empty = false;
    {
      std::lock_guard lock(deferred_mu);
      was_empty = deferred.empty();
      deferred.emplace_back(std::move(done), std::move(e));
    }
    // Wakes rd_kafka_queue_poll() on the poll thread; the flag sticks if it is not waiting yet.
    if (was_empty) rd_kafka_queue_yield(main_queue.get());
  }

  void finished_one() {
    if (outstanding.fetch_sub(1) == 1 && idle_waiters.load() > 0) {  // seq_cst: pairs with wait_idle()
      std::lock_guard lock(idle_mu);
      idle_cv.notify_all();
    }
  }

  // Waits until no handler is pending, up to deadline.
  bool wait_idle(clock::time_point deadline) {
    idle_waiters.fetch_add(1);
    std::unique_lock lock(idle_mu);
    const bool idle = idle_cv.wait_until(lock, deadline, [&] { return outstanding.load() == 0; });
    idle_waiters.fetch_sub(1);
    return idle;
  }

  bool run_deferred() {
    std::vector<std::pair<publish_handler, error>> batch;
    {
      std::lock_guard lock(deferred_mu);
      batch.swap(deferred);
    }
    for (auto& [done, e] : batch) {
      done(std::unexpected(std::move(e)));
      done = nullptr;  // release what the handler captured before counting it done
      finished_one();
    }
    return !batch.empty();
  }

  // Whether every partition of `name` has a leader that answers for it.
  result<void> topic_serving(const std::string& name, clock::time_point deadline) {
    rd_kafka_topic_t* rkt = topic(name);
    if (rkt == nullptr) return std::unexpected(error_from_kafka(rd_kafka_last_error(), "", name));
    const rd_kafka_metadata_t* raw = nullptr;
    const auto err = rd_kafka_metadata(rk.get(), 0, rkt, &raw, std::max(1, remaining_ms(deadline)));
    metadata_ptr md(raw);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return std::unexpected(error_from_kafka(err, "metadata request failed", name));
    for (int i = 0; i < md->topic_cnt; ++i) {
      const auto& t = md->topics[i];
      if (name != t.topic) continue;
      if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) return std::unexpected(error_from_kafka(t.err, "not in metadata", name));
      if (t.partition_cnt <= 0) return fail(errc::unavailable, "no partitions in metadata yet", name);
      for (int p = 0; p < t.partition_cnt; ++p) {
        const auto& part = t.partitions[p];
        if (part.err != RD_KAFKA_RESP_ERR_NO_ERROR || part.leader < 0) {
          return fail(errc::unavailable, "no leader yet", where_of(name, part.id));
        }
        std::int64_t low = 0;
        std::int64_t high = 0;
        // ListOffsets is answered by the leader only once it leads the partition.
        if (auto w = rd_kafka_query_watermark_offsets(rk.get(), name.c_str(), part.id, &low, &high,
                                                      std::max(1, remaining_ms(deadline)));
            w != RD_KAFKA_RESP_ERR_NO_ERROR) {
          return std::unexpected(error_from_kafka(w, "leader not serving yet", where_of(name, part.id)));
        }
      }
      return {};
    }
    return fail(errc::unavailable, "not in metadata yet", name);
  }

  error fatal_from_client() {
    char buf[512] = {};
    const rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk.get(), buf, sizeof buf);
    return error_from_kafka(code, std::string(rd_kafka_err2name(code)) + ": " + buf, "kafka", true);
  }

  void record_fatal() {
    std::lock_guard lock(fatal_mu);
    if (fatal) return;
    fatal = fatal_from_client();
    has_fatal.store(true, std::memory_order_release);
    const std::string line = "KAFKA_BUS: " + fatal->describe();
    if (opts.log) {
      opts.log(3, line);
    } else {
      std::fprintf(stderr, "%%3|yilian kafka_bus| %s\n", line.c_str());  // like librdkafka's default logger
    }
  }

  void complete(const rd_kafka_message_t& m) {
    std::unique_ptr<pending_publish> p(static_cast<pending_publish*>(m._private));
    in_flight.fetch_sub(1, std::memory_order_acq_rel);  // frees the slot: the handler may publish again
    const char* topic_name = rd_kafka_topic_name(m.rkt);
    if (m.err == RD_KAFKA_RESP_ERR_NO_ERROR && m.offset >= 0) {
      p->done(position{.topic = topic_name, .partition = m.partition, .offset = m.offset});
    } else if (m.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      // librdkafka acked this record implicitly, because a later batch of the
      // same producer succeeded, without the broker confirming this one. After
      // a NOT_LEADER answer on a new partition that ack is wrong: the broker
      // accepted the later batch without the earlier one, which is lost
      // (seen with librdkafka 2.0.2 and Kafka 3.9 right after topic creation;
      // cf. confluent-kafka-go#921). So no offset, no success: the caller
      // publishes again (at worst a duplicate, which event ids absorb).
      p->done(std::unexpected(error::make(
          errc::unavailable, "the broker did not confirm this record (acknowledged only implicitly); publish it again",
          where_of(topic_name, m.partition))));
    } else {
      p->done(std::unexpected(delivery_error(m, topic_name)));
    }
    p.reset();
    finished_one();
  }

  error delivery_error(const rd_kafka_message_t& m, const char* topic_name) {
    const std::string where = where_of(topic_name, m.partition);
    if (m.err == RD_KAFKA_RESP_ERR__FATAL) {
      record_fatal();
      std::lock_guard lock(fatal_mu);
      error e = *fatal;
      e.where = where;
      return e;
    }
    // The record that caused a fatal error carries its own code; librdkafka
    // raised the fatal state before failing it.
    const bool fatal_now = rd_kafka_fatal_error(rk.get(), nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
    if (fatal_now) record_fatal();
    std::string detail;
    switch (m.err) {
      case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        detail = "not acknowledged within " + std::to_string(opts.publish_timeout.count()) + " ms";
        break;
      case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
        detail = "cancelled: the bus shut down before the record was sent";
        break;
      case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        detail = "cancelled: the bus shut down before the broker acknowledged the record";
        break;
      default:
        detail = rd_kafka_err2str(m.err);
        break;
    }
    if (rd_kafka_message_status(&m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED) {
      detail += "; the record may have been written";
    }
    return error_from_kafka(m.err, detail, where, fatal_now);
  }

  void handle(rd_kafka_event_t* ev) {
    switch (rd_kafka_event_type(ev)) {
      case RD_KAFKA_EVENT_DR: {
        std::array<const rd_kafka_message_t*, 512> batch{};
        for (std::size_t n; (n = rd_kafka_event_message_array(ev, batch.data(), batch.size())) > 0;) {
          for (std::size_t i = 0; i < n; ++i) complete(*batch[i]);
        }
        break;
      }
      case RD_KAFKA_EVENT_ERROR:
        if (rd_kafka_event_error_is_fatal(ev) != 0) {
          record_fatal();
        } else if (opts.log) {
          opts.log(4, std::string("KAFKA_BUS: ") + rd_kafka_event_error_string(ev));
        }
        break;
      default:
        break;
    }
  }

  void run() {
    poller_id.store(std::this_thread::get_id());
    for (;;) {
      run_deferred();
      if (stopping.load(std::memory_order_acquire)) break;
      event_ptr ev(rd_kafka_queue_poll(main_queue.get(), 1000));
      if (ev) handle(ev.get());
    }
    // Serve what is still queued (purged messages, late deferrals) without waiting.
    for (;;) {
      bool any = run_deferred();
      if (event_ptr ev(rd_kafka_queue_poll(main_queue.get(), 0)); ev) {
        handle(ev.get());
        any = true;
      }
      if (!any) break;
    }
  }
};

kafka_bus::kafka_bus(std::unique_ptr<impl> state) : impl_(std::move(state)) {
  impl_->poller = std::thread([s = impl_.get()] {
    name_this_thread("yl-kafka-poll");
    s->run();
  });
}

kafka_bus::~kafka_bus() {
  impl& s = *impl_;
  // Publishes that start from now on fail with cancelled (seq_cst pairs with publish()).
  s.closing.store(true);
  const auto deadline = clock::now() + s.opts.shutdown_timeout;
  if (s.outstanding.load() > 0) {
    rd_kafka_flush(s.rk.get(), remaining_ms(deadline));  // sends lingering batches at once
    s.wait_idle(deadline);
  }
  // Whatever is left is purged; its delivery reports (cancelled) come through
  // the poll thread. Repeat: a publish that raced with `closing` may enqueue late.
  const auto purge_deadline = clock::now() + std::chrono::seconds(10);
  while (s.in_flight.load() > 0 && clock::now() < purge_deadline) {
    rd_kafka_purge(s.rk.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    s.wait_idle(std::min(purge_deadline, clock::now() + milliseconds(200)));
  }
  s.stopping.store(true, std::memory_order_release);
  rd_kafka_queue_yield(s.main_queue.get());
  s.poller.join();
  if (const auto left = s.in_flight.load(); left > 0 && s.opts.log) {
    s.opts.log(3, "KAFKA_BUS: " + std::to_string(left) + " publishes got no delivery report before shutdown");
  }
  {
    std::unique_lock lock(s.topics_mu);
    s.topics.clear();
  }
  s.main_queue.reset();
  s.rk.reset();
}

void kafka_bus::publish(message msg, publish_handler done) {
  impl& s = *impl_;
  if (!done) done = [](result<position>) {};
  // Count first, then check `closing`: the destructor sets `closing` and then
  // reads the count, so one of the two sees the other.
  const std::size_t before = s.in_flight.fetch_add(1);
  if (s.closing.load()) {
    s.in_flight.fetch_sub(1);
    return s.defer(std::move(done), error::make(errc::cancelled, "the Kafka bus is shutting down", msg.topic));
  }
  if (s.has_fatal.load(std::memory_order_acquire)) {
    s.in_flight.fetch_sub(1);
    std::unique_lock lock(s.fatal_mu);
    error e = *s.fatal;
    lock.unlock();
    e.where = msg.topic;
    return s.defer(std::move(done), std::move(e));
  }
  if (msg.topic.empty()) {
    s.in_flight.fetch_sub(1);
    return s.defer(std::move(done), error::make(errc::invalid_argument, "publish without a topic"));
  }
  if (before >= s.opts.max_in_flight) {
    s.in_flight.fetch_sub(1);
    return s.defer(std::move(done),
                   error::make(errc::overloaded,
                               "more than " + std::to_string(s.opts.max_in_flight) + " publishes in flight", msg.topic));
  }
  rd_kafka_topic_t* rkt = s.topic(msg.topic);
  if (rkt == nullptr) {
    s.in_flight.fetch_sub(1);
    return s.defer(std::move(done), error_from_kafka(rd_kafka_last_error(), "cannot create a topic handle", msg.topic));
  }
  s.outstanding.fetch_add(1);
  auto p = std::make_unique<pending_publish>(pending_publish{.done = std::move(done), .value = std::move(msg.value)});

  std::array<rd_kafka_vu_t, 8> vu;  // only the first n are read; no need to zero 576 bytes per publish
  std::size_t n = 0;
  vu[n].vtype = RD_KAFKA_VTYPE_RKT;
  vu[n++].u.rkt = rkt;
  vu[n].vtype = RD_KAFKA_VTYPE_PARTITION;
  vu[n++].u.i32 = RD_KAFKA_PARTITION_UA;
  vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vu[n++].u.i = 0;  // no copy: the payload lives in `p` until the delivery report
  vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
  vu[n].u.mem.ptr = p->value.data();
  vu[n++].u.mem.size = p->value.size();
  if (!msg.key.empty()) {  // empty key -> null key -> librdkafka picks the partition
    vu[n].vtype = RD_KAFKA_VTYPE_KEY;
    vu[n].u.mem.ptr = msg.key.data();
    vu[n++].u.mem.size = msg.key.size();
  }
  vu[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
  vu[n++].u.i64 = msg.timestamp_ms;  // 0 = now
  vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vu[n++].u.ptr = p.get();
  headers_ptr hdrs;
  if (!msg.headers.empty()) {
    hdrs.reset(rd_kafka_headers_new(msg.headers.size()));
    for (const header& h : msg.headers) {
      rd_kafka_header_add(hdrs.get(), h.key.data(), static_cast<ssize_t>(h.key.size()), h.value.data(),
                          static_cast<ssize_t>(h.value.size()));
    }
    vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
    vu[n++].u.headers = hdrs.get();
  }

  error_ptr err(rd_kafka_produceva(s.rk.get(), vu.data(), n));
  if (!err) {
    (void)hdrs.release();  // librdkafka owns the headers and the opaque now
    (void)p.release();
    return;
  }
  // Not enqueued: this publish completes now, on the poll thread.
  const rd_kafka_resp_err_t code = rd_kafka_error_code(err.get());
  error e = code == RD_KAFKA_RESP_ERR__QUEUE_FULL
                ? error::make(errc::overloaded, "librdkafka's producer queue is full", msg.topic)
                : error_from_kafka(code, rd_kafka_error_string(err.get()), msg.topic,
                                   rd_kafka_error_is_fatal(err.get()) != 0 || code == RD_KAFKA_RESP_ERR__FATAL,
                                   rd_kafka_error_is_retriable(err.get()));
  if (code == RD_KAFKA_RESP_ERR__FATAL) s.record_fatal();
  s.in_flight.fetch_sub(1);
  s.defer(std::move(p->done), std::move(e));
  s.finished_one();  // the deferral counted itself; this publish's own count ends here
}

result<void> kafka_bus::flush(milliseconds timeout) {
  impl& s = *impl_;
  if (std::this_thread::get_id() == s.poller_id.load()) {
    return fail(errc::invalid_argument, "flush() called from a publish handler would wait for itself", "kafka");
  }
  const auto deadline = clock::now() + timeout;
  if (s.in_flight.load() > 0) rd_kafka_flush(s.rk.get(), remaining_ms(deadline));  // ignores linger.ms meanwhile
  if (!s.wait_idle(deadline)) {
    return fail(errc::timeout,
                std::to_string(s.outstanding.load()) + " publishes still outstanding after " +
                    std::to_string(timeout.count()) + " ms",
                "kafka");
  }
  return {};
}

result<void> kafka_bus::check_ready(milliseconds timeout) {
  impl& s = *impl_;
  if (auto f = fatal_error()) return std::unexpected(*f);
  if (s.closing.load()) return fail(errc::cancelled, "the Kafka bus is shutting down", "kafka");
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(s.rk.get(), 0, nullptr, &raw, std::max(1, to_ms(timeout)));
  metadata_ptr md(raw);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error e = error_from_kafka(err, "no Kafka broker answered within " + std::to_string(timeout.count()) + " ms (" +
                                        s.opts.brokers + ")",
                               "kafka");
    if (e.code == errc::timeout) e.code = errc::unavailable;
    e.retriable = true;
    return std::unexpected(std::move(e));
  }
  if (md->broker_cnt == 0) return fail(errc::unavailable, "the cluster reported no brokers", "kafka");
  return {};
}

result<std::int32_t> kafka_bus::partitions(std::string_view topic) {
  impl& s = *impl_;
  if (topic.empty()) return fail(errc::invalid_argument, "empty topic name");
  rd_kafka_topic_t* rkt = s.topic(std::string(topic));
  if (rkt == nullptr) return std::unexpected(error_from_kafka(rd_kafka_last_error(), "", std::string(topic)));
  const rd_kafka_metadata_t* raw = nullptr;
  const rd_kafka_resp_err_t err = rd_kafka_metadata(s.rk.get(), 0, rkt, &raw, to_ms(s.opts.request_timeout));
  metadata_ptr md(raw);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::unexpected(error_from_kafka(err, "metadata request failed", std::string(topic)));
  }
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (topic != t.topic) continue;
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return std::unexpected(error_from_kafka(
          t.err, t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? "no such topic" : rd_kafka_err2str(t.err),
          std::string(topic)));
    }
    return t.partition_cnt;
  }
  return fail(errc::not_found, "no such topic", std::string(topic));
}

result<void> kafka_bus::ensure_topics(std::span<const topic_spec> specs) {
  impl& s = *impl_;
  if (specs.empty()) return {};
  const auto deadline = clock::now() + s.opts.request_timeout;
  std::vector<new_topic_ptr> new_topics;
  std::vector<rd_kafka_NewTopic_t*> raw;
  std::set<std::string, std::less<>> names;
  for (const topic_spec& spec : specs) {
    if (spec.name.empty()) return fail(errc::invalid_argument, "topic spec without a name");
    if (!names.insert(spec.name).second) continue;  // first spec of a name wins
    const std::int32_t parts = spec.partitions > 0 ? spec.partitions : s.opts.default_partitions;
    char errstr[512] = {};
    new_topic_ptr nt(rd_kafka_NewTopic_new(spec.name.c_str(), parts, s.opts.replication_factor, errstr, sizeof errstr));
    if (!nt) return fail(errc::invalid_argument, errstr, spec.name);
    // Kafka's defaults are the broker's, not "forever": always say what the spec says.
    for (const auto& [name, value] : {std::pair<const char*, std::int64_t>{"retention.ms", spec.retention_ms},
                                      std::pair<const char*, std::int64_t>{"retention.bytes", spec.retention_bytes}}) {
      const std::string v = std::to_string(value < 0 ? -1 : value);
      if (auto err = rd_kafka_NewTopic_set_config(nt.get(), name, v.c_str()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return std::unexpected(error_from_kafka(err, std::string("cannot set ") + name, spec.name));
      }
    }
    raw.push_back(nt.get());
    new_topics.push_back(std::move(nt));
  }

  queue_ptr queue(rd_kafka_queue_new(s.rk.get()));
  admin_options_ptr options(rd_kafka_AdminOptions_new(s.rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  char errstr[512] = {};
  const int timeout_ms = remaining_ms(deadline);
  if (rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, errstr, sizeof errstr) ||
      rd_kafka_AdminOptions_set_operation_timeout(options.get(), timeout_ms, errstr, sizeof errstr)) {
    return fail(errc::invalid_argument, errstr, "kafka");
  }
  rd_kafka_CreateTopics(s.rk.get(), raw.data(), raw.size(), options.get(), queue.get());
  // librdkafka enforces the request timeout itself; the margin covers its bookkeeping.
  event_ptr ev(rd_kafka_queue_poll(queue.get(), remaining_ms(deadline) + 2000));
  if (!ev) return fail(errc::timeout, "CreateTopics got no answer in time", "kafka");
  if (const auto err = rd_kafka_event_error(ev.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::unexpected(error_from_kafka(err, rd_kafka_event_error_string(ev.get()), "kafka"));
  }
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev.get());
  if (res == nullptr) return fail(errc::internal, "unexpected admin result event", "kafka");
  std::size_t count = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &count);
  for (std::size_t i = 0; i < count; ++i) {
    const auto err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) continue;
    const char* msg = rd_kafka_topic_result_error_string(results[i]);
    return std::unexpected(
        error_from_kafka(err, msg != nullptr ? msg : "", rd_kafka_topic_result_name(results[i])));
  }

  // The controller has the topics; wait until every partition's leader serves
  // it, so that partitions() and publishes right after this succeed (a first
  // produce answered NOT_LEADER is what trips librdkafka's implicit acks).
  const auto ready_deadline = clock::now() + s.opts.topic_ready_timeout;
  for (const std::string& name : names) {
    for (;;) {
      auto ready = s.topic_serving(name, std::min(ready_deadline, clock::now() + s.opts.request_timeout));
      if (ready) break;
      if (clock::now() >= ready_deadline) {
        return fail(errc::timeout, "created, but its partitions are not served yet: " + ready.error().describe(),
                    name);
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  return {};
}

result<std::unique_ptr<consumer>> kafka_bus::subscribe(consumer_options options) {
  impl& s = *impl_;
  if (options.topics.empty()) return fail(errc::invalid_argument, "subscribe without topics", options.group);
  auto conf = consumer_conf(s.opts, options);
  if (!conf) return std::unexpected(conf.error());
  auto ctx = std::make_unique<client_context>(
      client_context{.log = s.opts.log, .start_timestamp_ms = options.start_timestamp_ms,
                     .lookup_timeout_ms = to_ms(s.opts.request_timeout)});
  rd_kafka_conf_set_opaque(conf->get(), ctx.get());
  if (ctx->log) rd_kafka_conf_set_log_cb(conf->get(), log_callback);
  rd_kafka_conf_set_rebalance_cb(conf->get(), rebalance_callback);
  char errstr[512] = {};
  rk_ptr rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), errstr, sizeof errstr));
  if (!rk) return fail(errc::config_error, std::string("cannot create the Kafka consumer: ") + errstr, options.group);
  (void)conf->release();  // rd_kafka_new took it
  rd_kafka_poll_set_consumer(rk.get());
  tpl_ptr list(rd_kafka_topic_partition_list_new(static_cast<int>(options.topics.size())));
  for (const std::string& t : options.topics) rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(rk.get(), list.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return std::unexpected(error_from_kafka(err, "subscribe failed", options.group));
  }
  return std::make_unique<kafka_consumer>(std::move(ctx), std::move(rk), s.opts.request_timeout);
}

const std::vector<std::pair<std::string, std::string>>& kafka_bus::effective_config() const noexcept {
  return impl_->config;
}

std::optional<error> kafka_bus::fatal_error() const {
  std::lock_guard lock(impl_->fatal_mu);
  return impl_->fatal;
}

std::size_t kafka_bus::in_flight() const noexcept { return impl_->in_flight.load(); }

result<std::unique_ptr<bus>> open_kafka_bus(kafka_options options) {
  auto conf = producer_conf(options);
  if (!conf) return std::unexpected(conf.error());
  auto state = std::make_unique<kafka_bus::impl>(std::move(options));
  state->config = dump_config(conf->get());
  rd_kafka_conf_set_opaque(conf->get(), &state->ctx);
  if (state->ctx.log) rd_kafka_conf_set_log_cb(conf->get(), log_callback);
  char errstr[512] = {};
  state->rk.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf->get(), errstr, sizeof errstr));
  if (!state->rk) return fail(errc::config_error, std::string("cannot create the Kafka producer: ") + errstr, "kafka");
  (void)conf->release();  // rd_kafka_new took it
  state->main_queue.reset(rd_kafka_queue_get_main(state->rk.get()));
  return std::make_unique<kafka_bus>(std::move(state));
}

}  // namespace yilian::bus
