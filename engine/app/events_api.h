// The engine's event endpoints under /api/v1/events:
//
//   POST /api/v1/events?topic=T&key=K   body: an Envelope in protobuf JSON.
//        Publishes it durably; 201 {"topic","partition","offset","event_id"}.
//        Roles: operator, hospital_system (a hospital may publish only events
//        whose source.hospital is its own). Unknown JSON fields, a topic that is
//        not configured, a missing event_id or type are 400/404 with the reason.
//   GET  /api/v1/events[?topic=T][&limit=N]   the console feed's most recent
//        events, newest first (ids and types only). Role: operator.
#pragma once

#include <set>
#include <string>

#include "engine/api/router.h"
#include "engine/app/event_feed.h"
#include "engine/bus/bus.h"

namespace yilian::app {

void add_event_routes(api::router& routes, bus::bus& b, const event_feed& feed, std::set<std::string> topics);

}  // namespace yilian::app
