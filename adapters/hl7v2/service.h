// yilian::hl7v2::service — everything HL7 v2 that `yilian serve` runs: one
// MLLP channel per hospital whose profile declares `inbound.mllp` (listener +
// ingest pipeline over the shared ingest store), and the outbound MLLP sender
// for every profile endpoint of kind MLLP.
//
// Startup order matters for "nothing acknowledged is lost": the ingest store
// is opened and every receipt a crash left unsettled is resolved from the bus
// tail (store::recover_pending) BEFORE any listener accepts a connection, so a
// resend after the crash is answered from the truth on the bus.
//
// Owned by run_serve on the main thread; start() and stop() are called there,
// the listeners and pipelines run on the io_context's threads.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "engine/bus/bus.h"
#include "engine/config/config.h"
#include "engine/core/error.h"
#include "engine/core/io_pool.h"
#include "engine/core/metrics.h"
#include "engine/identity/directory.h"

namespace yilian::store {
class ingest_store;
}

namespace yilian::hl7v2 {

struct service_options {
  // Where the ingest store lives: <data_dir>/ingest/ingest.db by default.
  std::filesystem::path ingest_file;
  // Bind every channel to this address instead of the profile's (tests: 127.0.0.1).
  std::string bind_override;
  // Replace every channel's port by 0 (tests: any free port; see ports()).
  bool any_port = false;
  // Consumer group prefix for the outbound sender (Kafka: consortium group_prefix).
  std::string group_prefix = "yilian";
  bool start_sender = true;
  // The identity index (engine/workflows/identity): answers PIX queries
  // (QBP^Q23, pix.h) and stamps enterprise patient ids on inbound events.
  // Null: queries are answered AR "identity index not available" and events
  // keep what the mapping gave them. Not owned; must outlive the service.
  const identity::directory* directory = nullptr;
  // Called for every PIX query answered, on an io_context thread (audit log):
  // ids and counts only. May be empty.
  std::function<void(std::string_view hospital, std::string_view control_id, std::string_view outcome,
                     std::size_t identifiers_returned)>
      on_pix_query;
  // Where the MLLP connections run (channel_options::connection_executor).
  connection_executor_source connection_executor;
};

struct channel_endpoint {
  std::string hospital;
  std::string address;  // bound address
  std::uint16_t port = 0;
  bool tls = false;
};

class service {
 public:
  service(boost::asio::any_io_executor executor, const config::loaded_consortium& cfg, bus::bus& bus,
          metrics::registry& registry, service_options options);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  // Opens the ingest store, recovers unsettled receipts, compiles the
  // profiles, binds every channel and starts the outbound sender. Errors name
  // the hospital and address; nothing is left listening on failure.
  result<void> start();

  // Stops accepting, lets in-flight messages finish (their ACKs are sent),
  // stops the sender, flushes the ingest store. Calls `done` on the executor.
  void stop(std::function<void()> done);

  std::vector<channel_endpoint> endpoints() const;
  // The ingest store (raw messages by claim-check); null before start().
  store::ingest_store* ingest() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace yilian::hl7v2
