// The engine's API server (engine/api/server.h) for in-process endpoint
// tests: 127.0.0.1 on a free port, its io_context run on a thread of its own,
// each principal's bearer token "tok-<principal id>".
//
//   yilian::test::api_host http;
//   app::add_referral_fhir_routes(http.routes(), svc, audit);
//   http.start({{.id = principal_id("operator"), .role = api::role::operator_, .hospital = hospital_id("")}});
//   auto r = http.call(boost::beast::http::verb::get, "/fhir/r4/Task/rf-1", "operator");
//   http.stop();  // before the services behind the routes stop
#pragma once

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/api/auth.h"
#include "engine/api/server.h"
#include "engine/core/metrics.h"
#include "tests/support/http_client.h"

namespace yilian::test {

class api_host {
 public:
  api_host()
      : server_(std::make_unique<api::server>(ioc_, api::server_options{.address = "127.0.0.1", .port = 0}, metrics_)) {}
  ~api_host() { stop(); }
  api_host(const api_host&) = delete;
  api_host& operator=(const api_host&) = delete;

  // The test adds its endpoints here, before start().
  api::router& routes() { return server_->routes(); }

  // Accepts these principals, each with the token "tok-<id>", and serves.
  void start(const std::vector<api::principal>& principals) {
    api::credential_store store;
    for (const auto& p : principals) REQUIRE(store.add(p, api::hash_token("tok-" + p.id.value())));
    server_->set_credentials(std::make_shared<const api::credential_store>(std::move(store)));
    REQUIRE(server_->start());
    thread_ = std::thread([this] { ioc_.run(); });
  }

  // Stops serving and joins the thread; idempotent. A fixture calls it before
  // stopping the services its routes use.
  void stop() {
    if (thread_.joinable()) {
      server_->stop([] {});
      ioc_.stop();
      thread_.join();
    }
    server_.reset();
  }

  std::uint16_t port() const { return server_->port(); }

  // One request as `who` (with its token).
  http_reply call(boost::beast::http::verb method, const std::string& target, const std::string& who,
                  const http_request& o = {}) const {
    return http_call(port(), method, target, "tok-" + who, o);
  }

 private:
  metrics::registry metrics_;
  boost::asio::io_context ioc_;
  std::unique_ptr<api::server> server_;
  std::thread thread_;
};

}  // namespace yilian::test
