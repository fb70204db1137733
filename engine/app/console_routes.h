// The clinic booking page (issue 4, item 4) and the one call it needs besides
// the booking API (engine/app/booking_api.h):
//
//   GET /console              301 -> /console/
//   GET /console/             index.html
//   GET /console/{file}       an embedded asset (engine/api/console): its
//                             Content-Type, Cache-Control: no-cache and a strong
//                             ETag (If-None-Match -> 304), 404 for other names
//   GET /api/v1/whoami        (bearer) {"id","role","hospital","hospital_name",
//                             "display_name"} of the caller
//
// The page's files are public (a login form has nothing to hide); every data
// call the page makes carries the clinic's bearer token.
#pragma once

#include "engine/api/router.h"
#include "engine/config/config.h"

namespace yilian::app {

// Copies what it needs from `cfg` (hospital names), so `cfg` need not outlive
// the router.
void add_console_routes(api::router& routes, const config::loaded_consortium& cfg);

}  // namespace yilian::app
