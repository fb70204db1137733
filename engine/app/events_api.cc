#include "engine/app/events_api.h"

#include <charconv>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "engine/app/envelope_json.h"
#include "engine/bus/publish.h"
#include "yilian/events/v1/envelope.pb.h"

namespace yilian::app {

namespace {

using api::http::status;
using api::http::verb;

}  // namespace

void add_event_routes(api::router& routes, bus::bus& b, const event_feed& feed, std::set<std::string> topics) {
  routes.add(
      verb::post, "/api/v1/events",
      [&b, topics](api::request& req) -> boost::asio::awaitable<result<api::response>> {
        const auto topic = req.query_param("topic");
        if (!topic || topic->empty()) co_return fail(errc::invalid_argument, "query parameter topic is required", "topic");
        if (!topics.contains(std::string(*topic))) {
          co_return fail(errc::not_found, "no topic " + std::string(*topic) + " is configured", "topic");
        }
        auto envelope = parse_envelope_json(req.body());
        if (!envelope) co_return std::unexpected(envelope.error());
        if (req.principal && req.principal->role == api::role::hospital_system &&
            envelope->source().hospital() != req.principal->hospital.value()) {
          co_return fail(errc::permission_denied, "a hospital system may publish only its own hospital's events",
                         "source.hospital");
        }
        auto published = co_await bus::async_publish(
            b, envelope_message(std::string(*topic), std::string(req.query_param("key").value_or("")), *envelope),
            boost::asio::use_awaitable);
        if (!published) co_return std::unexpected(published.error());
        co_return api::response::json(nlohmann::json{{"topic", published->topic},
                                                     {"partition", published->partition},
                                                     {"offset", published->offset},
                                                     {"event_id", envelope->event_id()}},
                                      status::created);
      },
      api::route_options{.roles = {api::role::operator_, api::role::hospital_system}});

  routes.add(
      verb::get, "/api/v1/events",
      [&feed](api::request& req) -> result<api::response> {
        std::optional<std::string> topic;
        if (auto t = req.query_param("topic")) topic = std::string(*t);
        const auto limit = req.count_param("limit", 50, 1000);
        auto out = nlohmann::json::array();
        for (const auto& e : feed.recent(topic, limit)) {
          out.push_back({{"topic", e.topic},
                         {"partition", e.partition},
                         {"offset", e.offset},
                         {"timestamp_ms", e.timestamp_ms},
                         {"event_id", e.event_id},
                         {"type", e.type},
                         {"source_hospital", e.source_hospital},
                         {"decoded", e.decoded}});
        }
        return api::response::json(nlohmann::json{{"events", std::move(out)}, {"seen", feed.records_seen()}});
      },
      api::route_options{.roles = {api::role::operator_}});
}

}  // namespace yilian::app
