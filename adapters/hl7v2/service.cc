#include "adapters/hl7v2/service.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "adapters/hl7v2/ingest.h"
#include "adapters/hl7v2/listener.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/sender.h"
#include "engine/core/log.h"
#include "engine/store/ingest_store.h"

namespace yilian::hl7v2 {
namespace asio = boost::asio;

namespace {
auto& service_logger() {
  static auto lg = log::get("hl7v2");
  return lg;
}
}  // namespace

struct service::impl {
  asio::any_io_executor executor;
  const config::loaded_consortium& cfg;
  bus::bus& bus;
  metrics::registry& registry;
  service_options options;

  std::unique_ptr<store::ingest_store> store;
  std::shared_ptr<ingest_metrics> metrics;
  struct channel {
    std::string hospital;
    std::string address;
    bool tls = false;
    std::unique_ptr<ingest_pipeline> pipeline;
    std::unique_ptr<listener> mllp;
  };
  std::vector<channel> channels;
  std::unique_ptr<outbound_sender> sender;

  impl(asio::any_io_executor ex, const config::loaded_consortium& c, bus::bus& b, metrics::registry& r,
       service_options o)
      : executor(std::move(ex)), cfg(c), bus(b), registry(r), options(std::move(o)) {}
};

service::service(asio::any_io_executor executor, const config::loaded_consortium& cfg, bus::bus& bus,
                 metrics::registry& registry, service_options options)
    : impl_(std::make_unique<impl>(std::move(executor), cfg, bus, registry, std::move(options))) {}

service::~service() {
  for (auto& ch : impl_->channels) ch.mllp->stop();
  if (impl_->sender) impl_->sender->stop();
}

result<void> service::start() {
  auto& s = *impl_;
  const auto file = s.options.ingest_file.empty() ? s.cfg.data_dir / "ingest" / "ingest.db" : s.options.ingest_file;
  auto opened = store::ingest_store::open(store::ingest_store_options{.file = file});
  if (!opened) return std::unexpected(opened.error());
  s.store = std::move(*opened);

  // Settle what a crash left half-done before anyone can resend it.
  std::vector<std::string> topics;
  for (const auto& t : s.cfg.topics) topics.push_back(t.name);
  auto recovered = store::recover_pending(*s.store, s.bus, topics);
  if (!recovered) return std::unexpected(recovered.error());
  if (recovered->unsettled > 0) {
    service_logger().info("ingest receipts recovered",
                          {log::field("unsettled", recovered->unsettled), log::field("done", recovered->done),
                           log::field("deleted", recovered->deleted), log::field("partial", recovered->partial),
                           log::field("records_scanned", recovered->records_scanned)});
  }

  s.metrics = std::make_shared<ingest_metrics>(s.registry);
  const auto& defaults = s.cfg.consortium.mllp();
  for (const auto& hp : s.cfg.profiles) {
    const auto& profile = hp.profile;
    if (!profile.has_inbound() || !profile.inbound().has_mllp()) continue;
    const auto& m = profile.inbound().mllp();
    auto compiled = mapper::compile(&s.cfg, &profile, hp.hospital_id);
    if (!compiled) {
      auto e = compiled.error();
      e.message = hp.hospital_id + ": " + e.message;
      return std::unexpected(e);
    }
    channel_options co;
    co.hospital = hp.hospital_id;
    co.bind_address = s.options.bind_override.empty() ? m.bind_address() : s.options.bind_override;
    if (co.bind_address.empty()) co.bind_address = "0.0.0.0";
    co.port = s.options.any_port ? 0 : static_cast<std::uint16_t>(m.port());
    if (m.max_frame_bytes() > 0) co.max_frame_bytes = m.max_frame_bytes();
    if (m.read_timeout_ms() > 0) co.read_timeout = std::chrono::milliseconds(m.read_timeout_ms());
    if (defaults.idle_timeout_ms() > 0) co.idle_timeout = std::chrono::milliseconds(defaults.idle_timeout_ms());
    if (defaults.max_connections() > 0) co.max_connections = defaults.max_connections();
    if (m.has_tls()) {
      co.tls = tls_files{.cert_file = s.cfg.resolve(m.tls().cert_file()).string(),
                         .key_file = s.cfg.resolve(m.tls().key_file()).string(),
                         .client_ca_file = m.tls().ca_file().empty() ? std::string{}
                                                                     : s.cfg.resolve(m.tls().ca_file()).string(),
                         .require_client_cert = m.tls().require_client_cert()};
    }
    co.ack_facility = s.cfg.consortium.id();
    co.connection_executor = s.options.connection_executor;
    co.utc_offset = std::chrono::minutes(
        compiled->zone().offset_at(std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count()) /
        60);
    impl::channel ch;
    ch.hospital = hp.hospital_id;
    ch.tls = m.has_tls();
    ch.pipeline = std::make_unique<ingest_pipeline>(
        ingest_options{.hospital = hp.hospital_id,
                       .consortium = &s.cfg,
                       .profile = &profile,
                       .directory = s.options.directory,
                       .on_pix_query = s.options.on_pix_query},
        std::move(*compiled), s.bus, *s.store, s.metrics);
    ch.mllp = std::make_unique<listener>(s.executor, co, *ch.pipeline, s.registry);
    if (auto started = ch.mllp->start(); !started) {
      for (auto& c : s.channels) c.mllp->stop();
      auto e = started.error();
      e.message = "MLLP channel of " + hp.hospital_id + " on " + co.bind_address + ":" + std::to_string(co.port) +
                  ": " + e.message;
      return std::unexpected(e);
    }
    ch.address = (co.bind_address.find(':') != std::string::npos ? "[" + co.bind_address + "]" : co.bind_address) +
                 ":" + std::to_string(ch.mllp->port());
    service_logger().info("mllp listening", {log::field("hospital", ch.hospital), log::field("address", ch.address),
                                             log::field("tls", ch.tls)});
    s.channels.push_back(std::move(ch));
  }

  if (s.options.start_sender) {
    s.sender = std::make_unique<outbound_sender>(s.executor, s.bus, s.cfg,
                                                 sender_options{.group_prefix = s.options.group_prefix,
                                                                .directory = s.options.directory},
                                                 s.registry);
    if (auto started = s.sender->start(); !started) {
      for (auto& c : s.channels) c.mllp->stop();
      return std::unexpected(started.error());
    }
  }
  return {};
}

void service::stop(std::function<void()> done) {
  auto& s = *impl_;
  for (auto& ch : s.channels) ch.mllp->stop();
  if (s.sender) s.sender->stop();
  asio::co_spawn(
      s.executor,
      [&s]() -> asio::awaitable<void> {
        for (auto& ch : s.channels) co_await ch.mllp->wait_stopped();
        if (s.sender) co_await s.sender->wait_stopped();
        if (s.store) {
          if (auto flushed = s.store->flush(std::chrono::seconds(30)); !flushed) {
            service_logger().error("ingest store flush failed", {log::field("error", flushed.error().describe())});
          }
        }
      },
      [done = std::move(done)](std::exception_ptr) { done(); });
}

std::vector<channel_endpoint> service::endpoints() const {
  std::vector<channel_endpoint> out;
  for (const auto& ch : impl_->channels) {
    const auto colon = ch.address.rfind(':');
    out.push_back(channel_endpoint{.hospital = ch.hospital,
                                   .address = ch.address.substr(0, colon),
                                   .port = ch.mllp->port(),
                                   .tls = ch.tls});
  }
  return out;
}

store::ingest_store* service::ingest() const { return impl_ ? impl_->store.get() : nullptr; }

}  // namespace yilian::hl7v2
