#include "adapters/hl7v2/ingest.h"

#include <chrono>
#include <mutex>
#include <optional>
#include <unistd.h>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/hl7_time.h"
#include "adapters/hl7v2/message.h"
#include "engine/core/log.h"

namespace yilian::hl7v2 {
namespace asio = boost::asio;
namespace ev = events::v1;

namespace {

auto& logger() {
  static auto lg = log::get("hl7v2.ingest");
  return lg;
}

// co_await a call that reports through a handler on another thread; resumes
// on the awaiting coroutine's executor. Deliberately not a coroutine itself
// (g++ 12 mishandles temporaries passed into nested coroutine frames).
template <class T, class Start>
auto await_callback(Start start) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      [](auto handler, Start st) {
        auto executor = asio::get_associated_executor(handler);
        st([handler = std::move(handler), executor](T value) mutable {
          asio::post(executor, [handler = std::move(handler), value = std::move(value)]() mutable {
            std::move(handler)(std::move(value));
          });
        });
      },
      asio::use_awaitable, std::move(start));
}

using publish_results = std::vector<result<bus::position>>;

// Publishes every message; resumes once all of them completed, with one
// result per message in order.
auto publish_all(bus::bus& b, std::vector<bus::message> msgs) {
  struct state {
    std::mutex mu;
    publish_results results;
    std::size_t remaining = 0;
    std::move_only_function<void(publish_results)> done;
  };
  auto start = [&b, msgs = std::move(msgs)](auto done) mutable {
    auto st = std::make_shared<state>();
    st->results.assign(msgs.size(), fail(errc::internal, "not published"));
    st->remaining = msgs.size();
    st->done = std::move(done);
    if (msgs.empty()) {
      auto d = std::move(st->done);
      d({});
      return;
    }
    for (std::size_t i = 0; i < msgs.size(); ++i) {
      b.publish(std::move(msgs[i]), [st, i](result<bus::position> r) {
        std::unique_lock lock(st->mu);
        st->results[i] = std::move(r);
        if (--st->remaining == 0) {
          auto results = std::move(st->results);
          auto d = std::move(st->done);
          lock.unlock();
          d(std::move(results));
        }
      });
    }
  };
  return await_callback<publish_results>(std::move(start));
}


bool condition_allows(std::string_view condition, bool success) {
  // HL7 table 0155: AL always, NE never, ER error/reject only, SU success only.
  if (condition == "NE") return false;
  if (condition == "ER") return !success;
  if (condition == "SU") return success;
  return true;  // AL (and anything unrecognised: answering is the safe side)
}

std::string_view condition_code(config::v1::AckCondition c) {
  switch (c) {
    case config::v1::ACK_CONDITION_NEVER: return "NE";
    case config::v1::ACK_CONDITION_ERROR_ONLY: return "ER";
    case config::v1::ACK_CONDITION_SUCCESS_ONLY: return "SU";
    default: return "AL";
  }
}



}  // namespace

void stamp_enterprise_ids(std::vector<mapped_event>& events, const identity::directory& directory) {
  for (auto& e : events) {
    auto& env = *e.envelope;
    if (!env.has_subject() || env.subject().identifiers_size() == 0 ||
        !env.subject().enterprise_patient_id().empty()) {
      continue;
    }
    std::string enterprise;
    const auto& ids = env.subject().identifiers();
    for (const bool record_keys : {true, false}) {
      for (const auto& id : ids) {
        if ((id.type() == ev::IDENTIFIER_TYPE_MRN) != record_keys || id.value().empty()) continue;
        enterprise = directory.enterprise_id_of(id.system(), id.value());
        if (!enterprise.empty()) break;
      }
      if (!enterprise.empty()) break;
    }
    if (enterprise.empty()) continue;
    if (e.topic == ev::TOPIC_PATIENT) e.key = enterprise;
    env.mutable_subject()->set_enterprise_patient_id(std::move(enterprise));
  }
}

ingest_metrics::ingest_metrics(metrics::registry& registry)
    : messages(&registry.add_counter("yilian_hl7v2_messages_total",
                                     "HL7 v2 messages answered, by hospital, message type (MSH-9.1) and ACK code.",
                                     {"hospital", "type", "ack"})),
      dead_letters(&registry.add_counter("yilian_hl7v2_dead_letters_total",
                                         "Inbound HL7 v2 input quarantined on the deadletter topic, by stage.",
                                         {"hospital", "stage"})),
      resends(&registry.add_counter("yilian_hl7v2_resends_total",
                                    "Messages received again (same facility, control id and bytes): re-ACKed, "
                                    "no new events.",
                                    {"hospital"})),
      seconds(&registry.add_histogram("yilian_hl7v2_ingest_seconds",
                                      "Time from a complete frame to its ACK (durable on the bus first).",
                                      {"hospital"}, metrics::exponential_buckets(0.0001, 2.0, 18))) {}

// What the pipeline decided for one message.
struct ingest_pipeline::decision {
  enum class kind { accepted, content_error, retry_later } what = kind::accepted;
  error err;              // content_error / retry_later
  bool reject_ar = false; // content error answered AR (facility not allowed on this channel)
};

ingest_pipeline::ingest_pipeline(ingest_options options, mapper map, bus::bus& bus, store::ingest_store& store,
                                 std::shared_ptr<ingest_metrics> metrics)
    : options_(std::move(options)), mapper_(std::move(map)), bus_(bus), store_(store), metrics_(std::move(metrics)) {
  if (options_.engine_facility.empty() && options_.consortium != nullptr) {
    options_.engine_facility = options_.consortium->consortium.id();
  }
  // ACK control ids: unique per process start and hospital, short (MSH-10 is ST 20 in v2.3).
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  ack_prefix_ = "Y" + std::to_string(now % 100000000) + std::to_string(::getpid() % 1000) + "-";
}

std::string ingest_pipeline::next_control_id() {
  return ack_prefix_ + std::to_string(ack_counter_.fetch_add(1, std::memory_order_relaxed) + 1);
}

asio::awaitable<std::vector<std::string>> ingest_pipeline::on_frame(const connection_info&, std::string payload) {
  co_return co_await process(std::move(payload));
}

asio::awaitable<std::vector<std::string>> ingest_pipeline::handle(std::string payload) {
  co_return co_await process(std::move(payload));
}

void ingest_pipeline::on_framing_error(const connection_info& conn, const error& err, std::string_view skipped) {
  // Bytes outside any frame are kept too: they may be a sender's broken
  // framing around real messages, which an operator wants to see.
  metrics_->dead_letters->with({options_.hospital, "mllp"}).inc();
  logger().warn("framing error", {log::field("hospital", options_.hospital), log::field("peer", conn.peer),
                                  log::field("connection", conn.connection_id), log::field("error", err.describe()),
                                  log::field("bytes", skipped.size())});
  if (skipped.empty()) return;
  store::raw_meta meta{.content_type = "application/octet-stream", .charset = {},
                       .received_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count()};
  auto hospital = options_.hospital;
  const auto topic = std::string(config::topic_name(ev::TOPIC_DEADLETTER));
  auto code = std::string(to_string(err.code));
  auto reason = err.message;
  auto& b = bus_;
  store_.put_raw(hospital, std::string(skipped), meta,
                 [&b, hospital, topic, code, reason](result<ev::ClaimCheck> raw) {
                   if (!raw) return;  // nothing to point at; the log line above remains
                   ev::Envelope env;
                   env.set_event_id(hl7_event_id(hospital, "", raw->sha256(), "mllp"));
                   env.set_type("yilian.events.v1.DeadLetter");
                   env.set_schema_version(1);
                   const auto now = to_timestamp(std::chrono::system_clock::now());
                   *env.mutable_occurred_at() = now;
                   *env.mutable_recorded_at() = now;
                   env.mutable_source()->set_hospital(hospital);
                   env.mutable_source()->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
                   *env.mutable_raw_ref() = *raw;
                   auto* dl = env.mutable_dead_letter();
                   *dl->mutable_raw() = *raw;
                   dl->set_reason(reason);
                   dl->set_error_code(code);
                   dl->set_stage("mllp");
                   dl->set_source_hospital(hospital);
                   dl->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
                   b.publish(bus::message{.topic = topic, .key = hospital, .value = env.SerializeAsString()},
                             [](result<bus::position>) {});
                 });
}

std::unique_ptr<mapped_batch> ingest_pipeline::take_batch() {
  {
    std::lock_guard lock(batches_mu_);
    if (!idle_batches_.empty()) {
      auto batch = std::move(idle_batches_.back());
      idle_batches_.pop_back();
      return batch;
    }
  }
  return std::make_unique<mapped_batch>();
}

void ingest_pipeline::give_back(std::unique_ptr<mapped_batch> batch) {
  if (!batch) return;
  batch->clear();  // frees what a large message took beyond the first block
  std::lock_guard lock(batches_mu_);
  if (idle_batches_.size() < max_idle_batches) idle_batches_.push_back(std::move(batch));
}

asio::awaitable<std::vector<std::string>> ingest_pipeline::process(std::string payload) {
  const auto started = std::chrono::steady_clock::now();
  const auto received_at = std::chrono::system_clock::now();
  const auto received_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(received_at.time_since_epoch()).count();
  const auto& profile = *options_.profile;
  const std::string& hospital = options_.hospital;

  // Everything the ACK needs, even for bytes that never parse.
  ack_header header = header_from_raw(payload);
  charset reply_charset = profile.default_charset();
  decision d;
  // The message's events, built on the arena of a batch from the pool (or
  // its DeadLetter); the batch goes back when the frame is done, however it
  // ends.
  struct batch_lease {
    ingest_pipeline& pipeline;
    std::unique_ptr<mapped_batch> batch;
    ~batch_lease() { pipeline.give_back(std::move(batch)); }
  } lease{*this, take_batch()};
  mapped_batch& events = *lease.batch;
  const auto first_component = [&](const std::string& hd) {
    const auto cut = hd.find(header.delims.component);
    return cut == std::string::npos ? hd : hd.substr(0, cut);
  };
  std::string facility = first_component(header.sending_facility);
  std::string control_id = header.control_id;
  std::string message_type =
      header.trigger.empty() ? header.message_code : header.message_code + "^" + header.trigger;
  std::string stage;
  std::string charset_name;
  // Set when the message is a query: the answer, nothing else happens.
  std::optional<pix_answer> query_answer;
  const auto build_options = [&] {
    const auto utc_seconds =
        std::chrono::duration_cast<std::chrono::seconds>(received_at.time_since_epoch()).count();
    return ack_build_options{.control_id = {},
                             .timestamp = received_at,
                             .utc_offset = std::chrono::minutes(mapper_.zone().offset_at(utc_seconds) / 60),
                             .application = options_.engine_application,
                             .facility = options_.engine_facility};
  };

  // 1. charset, 2. parse, 3. channel checks, 4. mapping.
  auto decoded = decode_message(payload, profile.default_charset());
  if (!decoded) {
    d = {decision::kind::content_error, decoded.error()};
    stage = "charset";
  } else {
    reply_charset = decoded->source;
    charset_name = std::string(msh18_name(decoded->source));
    auto parsed = message::parse(std::move(decoded->utf8));
    if (!parsed) {
      d = {decision::kind::content_error, parsed.error()};
      stage = "hl7v2.parse";
    } else {
      header = header_from(*parsed);
      facility = parsed->msh().component(4, 1);
      control_id = parsed->control_id();
      message_type = std::string(parsed->msh().field(9).raw());
      const auto& mllp = profile.inbound().mllp();
      const auto allowed = [](const auto& list, const std::string& v) {
        for (const auto& x : list) {
          if (x == v) return true;
        }
        return false;
      };
      if (!allowed(mllp.expected_sending_facilities(), facility)) {
        d = {decision::kind::content_error,
             error::make(errc::permission_denied,
                         "sending facility (MSH-4) '" + facility + "' is not accepted on the channel of " + hospital,
                         "MSH-4"),
             true};
        stage = "mllp";
      } else if (mllp.check_sending_application() &&
                 !allowed(mllp.expected_sending_applications(), parsed->msh().component(3, 1))) {
        d = {decision::kind::content_error,
             error::make(errc::permission_denied,
                         "sending application (MSH-3) '" + parsed->msh().component(3, 1) +
                             "' is not accepted on the channel of " + hospital,
                         "MSH-3"),
             true};
        stage = "mllp";
      } else if (control_id.empty()) {
        d = {decision::kind::content_error,
             error::make(errc::validation_failed, "required field missing: MSH-10 message control id", "MSH-10")};
        stage = "hl7v2.parse";
      } else if (is_query(*parsed)) {
        auto build = build_options();
        build.control_id = next_control_id();
        query_answer = answer_query(*parsed,
                                    pix_context{.hospital = hospital,
                                                .profile = &profile,
                                                .consortium = options_.consortium,
                                                .directory = options_.directory},
                                    build);
      } else {
        ev::ClaimCheck provisional;
        provisional.set_uri("raw://pending");
        provisional.set_size_bytes(payload.size());
        provisional.set_content_type("application/hl7-v2");
        provisional.set_charset(charset_name);
        auto mapped = mapper_.map_into(*parsed, provisional, received_at, events);
        if (!mapped) {
          d = {decision::kind::content_error, mapped.error()};
          stage = "profile.map";
        } else if (options_.directory != nullptr) {
          stamp_enterprise_ids(events.events(), *options_.directory);
        }
      }
    }
  }

  if (query_answer) {
    // Answered in the sender's charset like an ACK; a query is not kept.
    auto encoded = encode_text(query_answer->text, reply_charset);
    std::vector<std::string> replies{encoded ? std::move(*encoded) : std::move(query_answer->text)};
    logger().info("pix query answered",
                  {log::field("hospital", hospital), log::field("control_id", control_id),
                   log::field("outcome", query_answer->outcome),
                   log::field("identifiers_returned", query_answer->identifiers_returned)});
    if (options_.on_pix_query) {
      options_.on_pix_query(hospital, control_id, query_answer->outcome, query_answer->identifiers_returned);
    }
    metrics_->messages->with({hospital, header.message_code, std::string(to_string(query_answer->code))}).inc();
    metrics_->seconds->with({hospital}).observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    co_return replies;
  }

  // The DeadLetter event that is this message's outcome when it is refused
  // (the only event of `events`).
  const auto dead_letter_event = [&](const error& err, const std::string& at_stage) {
    events.clear();
    auto& env = *events.add(ev::TOPIC_DEADLETTER, hospital).envelope;
    env.set_type("yilian.events.v1.DeadLetter");
    env.set_schema_version(1);
    *env.mutable_occurred_at() = to_timestamp(received_at);
    *env.mutable_recorded_at() = to_timestamp(received_at);
    auto* src = env.mutable_source();
    src->set_hospital(hospital);
    src->set_system(first_component(header.sending_application));
    src->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    src->set_control_id(control_id);
    src->set_facility(facility);
    src->set_message_type(message_type);
    auto* body = env.mutable_dead_letter();
    body->set_reason(err.message);
    body->set_error_code(std::string(to_string(err.code)));
    body->set_where(err.where);
    body->set_stage(at_stage);
    body->set_source_hospital(hospital);
    body->set_protocol(ev::PROTOCOL_HL7V2_MLLP);
    body->set_control_id(control_id);
    body->set_message_type(message_type);
    body->set_retriable(err.retriable);
  };

  // A content error is kept as one DeadLetter event: it is this message's
  // outcome, deduplicated like any other on resend.
  const bool keyed = !control_id.empty();
  if (d.what == decision::kind::content_error) {
    metrics_->dead_letters->with({hospital, stage}).inc();
    logger().warn("message rejected",
                  {log::field("hospital", hospital), log::field("control_id", control_id),
                   log::field("type", message_type), log::field("stage", stage),
                   log::field("error", d.err.describe())});
    dead_letter_event(d.err, stage);
  }

  // 5. Keep the bytes and the receipt, publish, answer.
  const auto sha = store::sha256_hex(payload);
  const store::raw_meta meta{.content_type = "application/hl7-v2", .charset = charset_name,
                             .received_at_ms = received_ms};
  ev::ClaimCheck raw_ref;
  std::vector<std::string> to_publish;
  std::optional<store::receipt_key> key;
  bool conflict = false;
  if (keyed) {
    if (d.what == decision::kind::content_error) {
      events[0].envelope->set_event_id(hl7_event_id(hospital, facility, control_id, "deadletter"));
    }
    store::reserve_request req{.key = {.hospital = hospital, .facility = facility, .control_id = control_id},
                               .sha256 = sha,
                               .raw = payload,
                               .meta = meta,
                               .event_ids = {},
                               .message_type = message_type};
    for (const auto& e : events) req.event_ids.push_back(e.envelope->event_id());
    auto reserve = [this, req = std::move(req)](auto done) mutable { store_.reserve(std::move(req), std::move(done)); };
    auto outcome = co_await await_callback<result<store::reserve_outcome>>(std::move(reserve));
    if (!outcome) {
      d = {decision::kind::retry_later, outcome.error()};
    } else {
      switch (outcome->what) {
        case store::reserve_outcome::kind::fresh:
        case store::reserve_outcome::kind::resend_pending:
          key = store::receipt_key{.hospital = hospital, .facility = facility, .control_id = control_id};
          raw_ref = outcome->raw_ref;
          to_publish = std::move(outcome->unpublished_event_ids);
          if (outcome->what == store::reserve_outcome::kind::resend_pending) metrics_->resends->with({hospital}).inc();
          break;
        case store::reserve_outcome::kind::resend_done:
          metrics_->resends->with({hospital}).inc();
          break;
        case store::reserve_outcome::kind::conflict:
          conflict = true;
          break;
      }
    }
  }
  if (conflict || (!keyed && d.what != decision::kind::retry_later)) {
    // No receipt to hang it on: keep the bytes alone and dead-letter them.
    if (conflict) {
      d = {decision::kind::content_error,
           error::make(errc::conflict,
                       "message control id (MSH-10) was already used for a different message from this facility",
                       "MSH-10")};
      stage = "hl7v2.dedupe";
      metrics_->dead_letters->with({hospital, stage}).inc();
      dead_letter_event(d.err, stage);
    }
    events[0].envelope->set_event_id(hl7_event_id(hospital, facility, control_id.empty() ? sha : control_id,
                                                     conflict ? "conflict:" + sha : "deadletter:" + sha));
    auto put = [this, hospital, payload, meta](auto done) mutable {
      store_.put_raw(hospital, payload, meta, std::move(done));
    };
    auto raw = co_await await_callback<result<ev::ClaimCheck>>(std::move(put));
    if (!raw) {
      d = {decision::kind::retry_later, raw.error()};
    } else {
      raw_ref = *raw;
      to_publish = {events[0].envelope->event_id()};
    }
  }

  // Publish what the store says is not on the bus yet.
  if (d.what != decision::kind::retry_later && !to_publish.empty()) {
    std::vector<bus::message> msgs;
    std::vector<std::string> ids;
    const auto now = to_timestamp(std::chrono::system_clock::now());
    for (auto& e : events) {
      const auto& id = e.envelope->event_id();
      if (std::find(to_publish.begin(), to_publish.end(), id) == to_publish.end()) continue;
      auto& env = *e.envelope;
      // The claim-check is known only now; documents point into it.
      *env.mutable_raw_ref() = raw_ref;
      if (env.has_dead_letter()) *env.mutable_dead_letter()->mutable_raw() = raw_ref;
      if (env.has_report_issued()) {
        for (auto& doc : *env.mutable_report_issued()->mutable_documents()) {
          if (doc.uri().starts_with("raw://pending")) doc.set_uri(raw_ref.uri() + doc.uri().substr(13));
        }
      }
      *env.mutable_recorded_at() = now;
      msgs.push_back(bus::message{
          .topic = std::string(config::topic_name(e.topic)), .key = e.key, .value = env.SerializeAsString()});
      ids.push_back(id);
    }
    publish_results results = co_await publish_all(bus_, std::move(msgs));
    std::vector<std::string> published;
    const error* first_error = nullptr;
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (results[i]) published.push_back(ids[i]);
      else if (first_error == nullptr) first_error = &results[i].error();
    }
    if (first_error != nullptr) {
      auto err = *first_error;
      err.retriable = true;  // the sender's resend publishes the rest
      d = {decision::kind::retry_later, err};
      if (key) store_.abandon(*key, std::move(published));
    } else if (key) {
      store_.complete(*key);
    }
  } else if (d.what == decision::kind::retry_later && key) {
    store_.abandon(*key, {});
  }

  // 6. The answer.
  std::vector<std::string> replies;
  const auto& ack_policy = profile.ack();
  const bool enhanced = !header.accept_ack_type.empty() || !header.application_ack_type.empty() ||
                        ack_policy.mode() == config::v1::ACK_MODE_ENHANCED;
  ack_build_options build = build_options();
  const auto add_reply = [&](ack_code code, const error* err) {
    build.control_id = next_control_id();
    std::vector<ack_error> errs;
    if (err != nullptr) errs.push_back(to_ack_error(*err));
    auto text = build_ack(header, code, errs, build);
    auto encoded = encode_text(text, reply_charset);
    replies.push_back(encoded ? std::move(*encoded) : std::move(text));
  };
  std::string_view ack_label;
  if (!enhanced) {
    switch (d.what) {
      case decision::kind::accepted: add_reply(ack_code::AA, nullptr); ack_label = "AA"; break;
      case decision::kind::content_error:
        add_reply(d.reject_ar ? ack_code::AR : ack_code::AE, &d.err);
        ack_label = d.reject_ar ? "AR" : "AE";
        break;
      case decision::kind::retry_later: add_reply(ack_code::AR, &d.err); ack_label = "AR"; break;
    }
  } else {
    const std::string accept = header.accept_ack_type.empty() ? std::string(condition_code(ack_policy.accept_ack()))
                                                              : header.accept_ack_type;
    const std::string application = header.application_ack_type.empty()
                                        ? std::string(condition_code(ack_policy.application_ack()))
                                        : header.application_ack_type;
    const bool committed = d.what != decision::kind::retry_later;
    if (condition_allows(accept, committed)) add_reply(committed ? ack_code::CA : ack_code::CR, committed ? nullptr : &d.err);
    ack_label = committed ? "CA" : "CR";
    if (committed) {
      const bool ok = d.what == decision::kind::accepted;
      if (condition_allows(application, ok)) {
        if (ok) add_reply(ack_code::AA, nullptr);
        else add_reply(d.reject_ar ? ack_code::AR : ack_code::AE, &d.err);
      }
      ack_label = ok ? "CA+AA" : (d.reject_ar ? "CA+AR" : "CA+AE");
    }
  }
  if (d.what == decision::kind::retry_later) {
    logger().warn("message not accepted now",
                  {log::field("hospital", hospital), log::field("control_id", control_id),
                   log::field("error", d.err.describe())});
  }
  metrics_->messages->with({hospital, header.message_code, ack_label}).inc();
  metrics_->seconds->with({hospital}).observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  co_return replies;
}

}  // namespace yilian::hl7v2
