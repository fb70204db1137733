#include "engine/app/serve.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "adapters/hl7v2/service.h"
#include "adapters/webhook/sender.h"
#include "engine/api/audit.h"
#include "engine/api/server.h"
#include "engine/app/booking_api.h"
#include "engine/app/booking_fhir.h"
#include "engine/app/bus_factory.h"
#include "engine/app/careplan_api.h"
#include "engine/app/console_routes.h"
#include "engine/app/event_feed.h"
#include "engine/app/events_api.h"
#include "engine/app/patient_access.h"
#include "engine/app/patient_api.h"
#include "engine/app/patient_fhir.h"
#include "engine/app/referral_api.h"
#include "engine/app/referral_fhir.h"
#include "engine/app/report_api.h"
#include "engine/app/version.h"
#include "engine/bus/instrumented_bus.h"
#include "engine/config/config.h"
#include "engine/core/io_pool.h"
#include "engine/core/log.h"
#include "engine/core/metrics.h"
#include "engine/workflows/booking/feed.h"
#include "engine/workflows/booking/notifier.h"
#include "engine/workflows/referral/feed.h"
#include "engine/workflows/referral/notifier.h"
#include "engine/workflows/reports/router.h"
#include "engine/workflows/identity/service.h"
#include "engine/workflows/booking/service.h"
#include "engine/core/thread.h"

namespace yilian::app {

namespace {

api::role to_api_role(config::v1::Role r) {
  switch (r) {
    case config::v1::ROLE_HOSPITAL_SYSTEM: return api::role::hospital_system;
    case config::v1::ROLE_OPERATOR: return api::role::operator_;
    case config::v1::ROLE_PATIENT_GATEWAY: return api::role::patient_gateway;
    default: return api::role::clinic_user;
  }
}

log::level to_log_level(config::v1::LogLevel l) {
  switch (l) {
    case config::v1::LOG_LEVEL_TRACE: return log::level::trace;
    case config::v1::LOG_LEVEL_DEBUG: return log::level::debug;
    case config::v1::LOG_LEVEL_WARN: return log::level::warn;
    case config::v1::LOG_LEVEL_ERROR: return log::level::error;
    case config::v1::LOG_LEVEL_CRITICAL: return log::level::critical;
    case config::v1::LOG_LEVEL_OFF: return log::level::off;
    default: return log::level::info;
  }
}

result<std::shared_ptr<const api::credential_store>> credentials(const config::loaded_consortium& cfg,
                                                                 const patient_tokens& patients) {
  auto store = std::make_shared<api::credential_store>();
  if (patients.key) store->accept_patient_tokens(patients.key);
  for (const auto& p : cfg.consortium.principals()) {
    auto added = store->add(api::principal{.id = principal_id{p.id()}, .role = to_api_role(p.role()),
                                           .hospital = hospital_id{p.hospital()}, .display_name = p.display_name()},
                            p.token_sha256());
    if (!added) return std::unexpected(added.error());
  }
  return store;
}

api::server_options http_options(const config::loaded_consortium& cfg) {
  const auto& h = cfg.consortium.http();
  api::server_options o;
  if (!h.address().empty()) o.address = h.address();
  if (h.has_port()) o.port = static_cast<std::uint16_t>(h.port());
  if (h.body_limit_bytes() > 0) o.body_limit = h.body_limit_bytes();
  if (h.read_timeout_ms() > 0) o.read_timeout = std::chrono::milliseconds(h.read_timeout_ms());
  if (h.max_connections() > 0) o.max_connections = h.max_connections();
  return o;
}

}  // namespace

bool split_host_port(std::string_view text, std::string& host, std::uint16_t& port) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) return false;
  auto h = text.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (h.empty()) return false;
  const auto p = text.substr(colon + 1);
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc{} || ptr != p.data() + p.size() || value > 65535) return false;
  host.assign(h);
  port = static_cast<std::uint16_t>(value);
  return true;
}

int run_serve(const serve_options& options) {
  auto validated = config::validate_consortium(options.config, config::load_options{.data_dir = options.data_dir});
  if (!validated.report.ok()) {
    std::fprintf(stderr, "yilian: refusing to start: the configuration has %zu error(s)\n%s",
                 validated.report.diagnostics.size(), validated.report.to_string().c_str());
    return 1;
  }
  const auto& cfg = *validated.loaded;

  auto level = to_log_level(cfg.consortium.logging().level());
  if (options.log_level) {
    auto parsed = log::parse_level(*options.log_level);
    if (!parsed) {
      std::fprintf(stderr, "yilian: %s\n", parsed.error().describe().c_str());
      return 1;
    }
    level = *parsed;
  }
  const std::string log_file =
      cfg.consortium.logging().file().empty() ? std::string{} : cfg.resolve(cfg.consortium.logging().file()).string();
  if (auto configured = log::configure(log::options{.min_level = level, .file = log_file}); !configured) {
    std::fprintf(stderr, "yilian: %s\n", configured.error().describe().c_str());
    return 2;
  }
  const auto logger = log::get("app");
  logger.info("starting", {log::field("version", version()), log::field("consortium", cfg.consortium.id()),
                           log::field("hospitals", cfg.consortium.hospitals_size())});

  auto http = http_options(cfg);
  if (options.http_listen && !split_host_port(*options.http_listen, http.address, http.port)) {
    std::fprintf(stderr, "yilian: --http-listen %s is not host:port\n", options.http_listen->c_str());
    return 1;
  }
  // Patient tokens: without their key the engine serves everything else and
  // answers patient sessions 503 (said once here, and in each answer).
  const auto patient_keys = patient_tokens_from(cfg);
  const bool has_gateway = std::any_of(cfg.consortium.principals().begin(), cfg.consortium.principals().end(),
                                       [](const auto& p) { return p.role() == config::v1::ROLE_PATIENT_GATEWAY; });
  if (!patient_keys.key && (has_gateway || cfg.consortium.has_patient_access())) {
    logger.warn("patient sessions unavailable", {log::field("reason", patient_keys.unavailable)});
  }
  auto creds = credentials(cfg, patient_keys);
  if (!creds) {
    std::fprintf(stderr, "yilian: principals: %s\n", creds.error().describe().c_str());
    return 1;
  }

  auto opened = open_bus(cfg, bus_overrides{.kafka_brokers = options.kafka_brokers});
  if (!opened) {
    logger.error("cannot open the bus", {log::field("error", opened.error().describe())});
    std::fprintf(stderr, "yilian: cannot open the bus: %s\n", opened.error().describe().c_str());
    return 2;
  }
  std::unique_ptr<bus::bus> raw_bus = std::move(*opened);
  const auto topics = topic_specs(cfg);
  if (auto ensured = raw_bus->ensure_topics(topics); !ensured) {
    logger.error("cannot create topics", {log::field("error", ensured.error().describe())});
    std::fprintf(stderr, "yilian: cannot create topics: %s\n", ensured.error().describe().c_str());
    return 2;
  }
  logger.info("bus open", {log::field("kind", raw_bus->kind()), log::field("topics", topics.size())});

  metrics::registry registry;
  registry.add_gauge("yilian_build_info", "Always 1; labels say which build runs.", {"version"})
      .with({version()})
      .set(1);
  bus::instrumented_bus events_bus(*raw_bus, registry);

  std::vector<std::string> topic_names;
  std::set<std::string> topic_set;
  for (const auto& t : topics) {
    topic_names.push_back(t.name);
    topic_set.insert(t.name);
  }
  event_feed feed(events_bus, topic_names, 200);
  if (auto started = feed.start(); !started) {
    std::fprintf(stderr, "yilian: cannot start the event feed: %s\n", started.error().describe().c_str());
    return 2;
  }
  auto lag_gauge = registry.add_callback_gauge(
      "yilian_bus_consumer_lag", "Records published but not yet committed by a consumer group, per partition.",
      {"group", "topic", "partition"}, [&feed] {
        std::vector<metrics::sample> out;
        for (const auto& l : feed.lag()) {
          out.push_back(metrics::sample{.label_values = {event_feed::group, l.topic, std::to_string(l.partition)},
                                        .value = static_cast<double>(l.lag())});
        }
        return out;
      });

  boost::asio::io_context ioc;
  // HTTP and MLLP connections run on a context per thread (engine/core/
  // io_pool.h); the shared context runs the accept loops, the outbound
  // senders, timers and the signals.
  const unsigned io_threads = std::max(2U, cfg.consortium.http().threads());
  io_pool connections(io_threads, "yl-conn");
  auto connection_executor = [&connections] { return connections.next(); };
  http.connection_executor = connection_executor;
  api::server server(ioc, http, registry);
  server.set_credentials(std::move(*creds));
  std::atomic<const workflows::booking::service*> booking_ref{nullptr};
  std::atomic<const workflows::referral::service*> referral_ref{nullptr};
  std::atomic<const workflows::recurring::scheduler*> careplan_ref{nullptr};
  std::atomic<const workflows::reports::library*> reports_ref{nullptr};
  std::atomic<const workflows::identity::service*> identity_ref{nullptr};
  server.set_readiness([&events_bus, &booking_ref, &referral_ref, &careplan_ref, &reports_ref, &identity_ref] {
    std::vector<std::string> reasons;
    if (auto ready = events_bus.check_ready(std::chrono::seconds(2)); !ready) {
      reasons.push_back("bus: " + ready.error().describe());
    }
    if (const auto* b = booking_ref.load(); b != nullptr && !b->caught_up()) {
      reasons.push_back("booking: still reading the booking topic");
    }
    if (const auto* r = referral_ref.load(); r != nullptr && !r->caught_up()) {
      reasons.push_back("referral: still reading the referral topic");
    }
    if (const auto* c = careplan_ref.load(); c != nullptr && !c->caught_up()) {
      reasons.push_back("careplan: still reading the care-plan topic");
    }
    if (const auto* l = reports_ref.load(); l != nullptr && !l->caught_up()) {
      reasons.push_back("reports: still reading the report topic");
    }
    if (const auto* i = identity_ref.load(); i != nullptr && !i->caught_up()) {
      reasons.push_back("identity: still reading the identity log");
    }
    return reasons;
  });
  add_event_routes(server.routes(), events_bus, feed, topic_set);
  // Audit log of patient-data reads and writes.
  auto audit = api::audit_log::open(cfg.data_dir / "audit" / "audit.log");
  if (!audit) {
    std::fprintf(stderr, "yilian: %s\n", audit.error().describe().c_str());
    return 2;
  }
  // Consumer groups: "[<group_prefix>-]yilian-booking..." like the HL7 sender's.
  const std::string configured_prefix = cfg.uses_kafka() ? cfg.consortium.bus().kafka().group_prefix() : "";
  const std::string kafka_prefix = configured_prefix.empty() ? "" : configured_prefix + "-";
  // The identity index: every instance folds the identity log; the feed
  // copies patient records into it; the writer announces link decisions.
  auto identity_options = workflows::identity::options_from(cfg);
  if (!identity_options) {
    std::fprintf(stderr, "yilian: %s\n", identity_options.error().describe().c_str());
    return 1;
  }
  identity_options->group_prefix = kafka_prefix;
  workflows::identity::service identity(events_bus, std::move(*identity_options), &registry);
  if (auto started = identity.start(); !started) {
    logger.error("cannot start the identity index", {log::field("error", started.error().describe())});
    std::fprintf(stderr, "yilian: cannot start the identity index: %s\n", started.error().describe().c_str());
    return 2;
  }
  identity_ref.store(&identity);
  // Booking workflow: the ledger (view of the booking topic) and the writer.
  auto booking_ledger = workflows::booking::ledger::create(cfg);
  if (!booking_ledger) {
    std::fprintf(stderr, "yilian: booking: %s\n", booking_ledger.error().describe().c_str());
    return 2;
  }
  workflows::booking::service booking(
      events_bus, std::move(*booking_ledger),
      workflows::booking::service_options{
          .topic = std::string(config::topic_name(events::v1::TOPIC_BOOKING)),
          .group_prefix = kafka_prefix},
      &registry);
  if (auto started = booking.start(); !started) {
    logger.error("cannot start the booking workflow", {log::field("error", started.error().describe())});
    std::fprintf(stderr, "yilian: cannot start the booking workflow: %s\n", started.error().describe().c_str());
    return 2;
  }
  workflows::booking::notifier booking_notifier(
      events_bus, workflows::booking::notifier_options{
                      .booking_topic = std::string(config::topic_name(events::v1::TOPIC_BOOKING)),
                      .outbound_topic = std::string(config::topic_name(events::v1::TOPIC_OUTBOUND)),
                      .group_prefix = kafka_prefix,
                      .listeners = workflows::booking::appointment_listeners(cfg),
                      .patients = workflows::patients_hear(cfg, "AppointmentChanged")});
  workflows::booking::feed booking_feed(
      events_bus, booking,
      workflows::booking::feed_options{
          .booking_topic = std::string(config::topic_name(events::v1::TOPIC_BOOKING)),
          .patient_topic = std::string(config::topic_name(events::v1::TOPIC_PATIENT)),
          .report_topic = std::string(config::topic_name(events::v1::TOPIC_REPORT)),
          .group_prefix = kafka_prefix});
  for (auto started : {booking_notifier.start(), booking_feed.start()}) {
    if (!started) {
      std::fprintf(stderr, "yilian: cannot start the booking workflow: %s\n", started.error().describe().c_str());
      return 2;
    }
  }
  booking_ref.store(&booking);
  add_booking_routes(server.routes(), booking, **audit, booking_api_options{.patients = &identity});
  add_booking_fhir_routes(server.routes(), booking, **audit);

  // Referral workflow: the ledger and writer, what hospitals and bookings
  // report about referrals, and both sides told of each decision.
  const std::string referral_topic(config::topic_name(events::v1::TOPIC_REFERRAL));
  workflows::referral::service referral(
      events_bus,
      std::make_unique<workflows::referral::ledger>(cfg, workflows::referral::options_from(cfg)),
      workflows::referral::service_options{.topic = referral_topic, .group_prefix = kafka_prefix}, &registry);
  workflows::referral::feed referral_feed(
      events_bus, referral,
      workflows::referral::feed_options{.referral_topic = referral_topic,
                                        .booking_topic = std::string(config::topic_name(events::v1::TOPIC_BOOKING)),
                                        .patient_topic = std::string(config::topic_name(events::v1::TOPIC_PATIENT)),
                                        .report_topic = std::string(config::topic_name(events::v1::TOPIC_REPORT)),
                                        .group_prefix = kafka_prefix});
  workflows::referral::notifier referral_notifier(
      events_bus, referral, cfg,
      workflows::referral::notifier_options{.referral_topic = referral_topic,
                                            .outbound_topic = std::string(config::topic_name(events::v1::TOPIC_OUTBOUND)),
                                            .group_prefix = kafka_prefix});
  // Report sharing: the library of issued reports and the router that sends
  // each to the referrers and the patient channel together.
  workflows::reports::library report_library(
      events_bus, workflows::reports::library_options{.topic = std::string(config::topic_name(events::v1::TOPIC_REPORT)),
                                                      .group_prefix = kafka_prefix,
                                                      .file = cfg.data_dir / "reports" / "reports.db"});
  workflows::reports::router report_router(
      events_bus, report_library, &booking, &referral, cfg,
      workflows::reports::router_options{.report_topic = std::string(config::topic_name(events::v1::TOPIC_REPORT)),
                                         .outbound_topic = std::string(config::topic_name(events::v1::TOPIC_OUTBOUND)),
                                         .group_prefix = kafka_prefix});
  for (auto started : {referral.start(), referral_feed.start(), referral_notifier.start(), report_library.start(),
                       report_router.start()}) {
    if (!started) {
      logger.error("cannot start the referral and report workflows", {log::field("error", started.error().describe())});
      std::fprintf(stderr, "yilian: cannot start the referral and report workflows: %s\n",
                   started.error().describe().c_str());
      return 2;
    }
  }
  referral_ref.store(&referral);
  reports_ref.store(&report_library);
  add_referral_routes(server.routes(), referral, **audit, referral_api_options{.patients = &identity});
  add_referral_fhir_routes(server.routes(), referral, **audit);
  add_patient_routes(server.routes(), identity, **audit, cfg);
  add_patient_fhir_routes(server.routes(), identity, **audit, cfg);
  add_patient_session_routes(server.routes(),
                             patient_session_options{.directory = &identity,
                                                     .ready = [&identity] { return identity.caught_up(); },
                                                     .tokens = patient_keys,
                                                     .now = {}},
                             **audit);
  // Set once the HL7 adapter runs (its ingest store holds the raw messages).
  std::atomic<hl7v2::service*> hl7_ref{nullptr};
  add_report_routes(server.routes(),
                    report_api_deps{.cfg = cfg,
                                    .library = report_library,
                                    .bookings = &booking,
                                    .referrals = &referral,
                                    .raw_store = [&hl7_ref] {
                                      auto* h = hl7_ref.load();
                                      return h != nullptr ? h->ingest() : nullptr;
                                    },
                                    .patients = &identity},
                    **audit);

  // Recurring exams: care plans booked period by period.
  auto careplans = start_careplan_scheduler(events_bus, booking, cfg, kafka_prefix, &registry);
  if (!careplans) {
    logger.error("cannot start the care-plan scheduler", {log::field("error", careplans.error().describe())});
    std::fprintf(stderr, "yilian: cannot start the care-plan scheduler: %s\n", careplans.error().describe().c_str());
    return 2;
  }
  careplan_ref.store(careplans->get());
  add_careplan_routes(server.routes(), **careplans, booking, events_bus, **audit);
  add_console_routes(server.routes(), cfg);
  const auto booking_metrics = add_booking_metrics(registry, booking);
  if (auto started = server.start(); !started) {
    std::fprintf(stderr, "yilian: cannot start the HTTP server on %s:%u: %s\n", http.address.c_str(), http.port,
                 started.error().describe().c_str());
    return 2;
  }
  const std::string address = (http.address.find(':') != std::string::npos ? "[" + http.address + "]" : http.address) +
                              ":" + std::to_string(server.port());
  logger.info("http listening", {log::field("address", address)});

  // HL7 v2: MLLP channels per hospital profile and the outbound MLLP sender.
  hl7v2::service hl7(ioc.get_executor(), cfg, events_bus, registry,
                     hl7v2::service_options{
                         .ingest_file = {},
                         .bind_override = options.mllp_any_port ? "127.0.0.1" : "",
                         .any_port = options.mllp_any_port,
                         .group_prefix = cfg.uses_kafka() ? cfg.consortium.bus().kafka().group_prefix() : "",
                         .start_sender = true,
                         .directory = &identity,
                         .on_pix_query = [&audit_log = **audit](std::string_view hospital, std::string_view control_id,
                                                                std::string_view outcome, std::size_t returned) {
                           const std::string principal = "mllp:" + std::string(hospital);
                           const std::vector<std::string> ids{"identifiers_returned=" + std::to_string(returned)};
                           audit_log.record(api::audit_log::channel_caller{.principal = principal,
                                                                           .role = "hospital_system",
                                                                           .hospital = hospital,
                                                                           .request_id = control_id},
                                            "pix-query", "PatientCrossReference", ids, outcome);
                         },
                         .connection_executor = connection_executor});
  if (auto started = hl7.start(); !started) {
    logger.error("cannot start HL7 v2", {log::field("error", started.error().describe())});
    std::fprintf(stderr, "yilian: cannot start HL7 v2: %s\n", started.error().describe().c_str());
    return 2;
  }
  hl7_ref.store(&hl7);
  // Webhooks: every WEBHOOK endpoint of the profiles and the patient notification channel.
  auto webhooks = webhook::start_webhook_senders(ioc.get_executor(), events_bus, cfg,
                                                 webhook::sender_options{.group_prefix = configured_prefix}, registry);
  if (!webhooks) {
    logger.error("cannot start the webhook sender", {log::field("error", webhooks.error().describe())});
    std::fprintf(stderr, "yilian: cannot start the webhook sender: %s\n", webhooks.error().describe().c_str());
    return 2;
  }

  auto work = boost::asio::make_work_guard(ioc);
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  bool stopping = false;
  std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec,
                                                                            int signo) {
    if (ec) return;
    if (stopping) {
      logger.warn("second signal: stopping now", {log::field("signal", signo)});
      ioc.stop();
      return;
    }
    stopping = true;
    logger.info("stopping", {log::field("signal", signo)});
    signals.async_wait(on_signal);
    // MLLP first (in-flight messages finish and get their ACK), then HTTP.
    (*webhooks)->stop([&] {
      hl7.stop([&] {
        server.stop([&] {
          boost::asio::post(ioc, [&] {
            signals.cancel();
            work.reset();
          });
        });
      });
    });
  };
  signals.async_wait(on_signal);

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < io_threads; ++i) {
    pool.emplace_back([&ioc] {
      name_this_thread("yl-io");
      ioc.run();
    });
  }
  ioc.run();
  for (auto& t : pool) t.join();
  connections.stop();  // HTTP and MLLP have stopped: their connections are closed

  // Intake has stopped (MLLP and HTTP closed): nothing more is acknowledged
  // to anyone. What is left is the workflows leaving their consumer groups
  // and the producer's flush. Destroying a Kafka consumer whose group
  // coordinator still holds one of its requests (after a broker restart) can
  // take as long as the socket timeout, so the rest is bounded: past the
  // deadline the producer is flushed and the process exits. Records not yet
  // committed are delivered again to whoever takes the partitions; nothing
  // acknowledged is lost (an ACK was given only once durable).
  std::mutex shutdown_mu;
  std::condition_variable shutdown_cv;
  bool shutdown_done = false;
  std::thread shutdown_watchdog([&] {
    std::unique_lock lock(shutdown_mu);
    if (shutdown_cv.wait_for(lock, std::chrono::seconds(15), [&] { return shutdown_done; })) return;
    logger.warn("shutdown deadline passed: consumers still leaving their groups; flushing and exiting",
                {log::field("deadline_seconds", 15)});
    auto f = events_bus.flush(std::chrono::seconds(10));
    if (!f) logger.error("flush on shutdown failed", {log::field("error", f.error().describe())});
    logger.info("stopped", {});
    log::flush();
    std::_Exit(f ? 0 : 2);
  });

  feed.stop();
  careplan_ref.store(nullptr);
  (*careplans)->stop();
  referral_ref.store(nullptr);
  reports_ref.store(nullptr);
  report_router.stop();
  report_library.stop();
  referral_notifier.stop();
  referral_feed.stop();
  referral.stop();
  booking_ref.store(nullptr);
  booking_feed.stop();
  booking_notifier.stop();
  booking.stop();
  auto flushed = events_bus.flush(std::chrono::seconds(10));
  if (!flushed) logger.error("flush on shutdown failed", {log::field("error", flushed.error().describe())});
  {
    std::lock_guard lock(shutdown_mu);
    shutdown_done = true;
  }
  shutdown_cv.notify_all();
  shutdown_watchdog.join();
  raw_bus.reset();
  logger.info("stopped", {});
  log::flush();
  return flushed ? 0 : 2;
}

}  // namespace yilian::app
