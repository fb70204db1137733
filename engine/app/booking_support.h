// What the booking endpoints share, REST (booking_api.cc) and FHIR
// (booking_fhir.cc): building a command for the caller, sending it to the
// equipment's single writer and waiting for the decision, answering a refusal.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <tuple>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "engine/api/http.h"
#include "engine/api/json_out.h"
#include "engine/workflows/booking/service.h"

namespace yilian::app::booking {

namespace bk = workflows::booking;

// The errc's status and the refusal's code: problem+json, or an
// OperationOutcome under /fhir/r4.
api::response refusal_response(const bk::refusal& r, const api::request& req);

// Whether the caller may see a booking: a principal of its requesting or
// owning hospital, or a consortium-wide operator.
bool sees(const api::principal& p, const bk::booking_view& b);

// A command for the authenticated caller. The command id comes from the
// Idempotency-Key header (per principal) when there is one.
events::v1::Envelope command_envelope(const api::request& req, events::v1::BookingAction action,
                                      const std::string& booking_id, const std::string& equipment_id,
                                      bk::seconds now);

// The id a new booking gets: from the Idempotency-Key header when there is one.
std::string new_booking_id(const api::request& req);

// "zs-ct-1.202611240800.CT-HEAD-PLAIN" (ledger::search's slot ids) ->
// equipment id, local start "2026-11-24T08:00", exam code.
result<std::tuple<std::string, std::string, std::string>> split_slot_id(std::string_view id);

// A patient's demographics as the REST endpoints show them (bookings,
// referrals, care plans, patients; proto field names, empty fields left out):
// {"name":{"hanzi","pinyin","family","given"},"birth_date","sex":"SEX_FEMALE",
// "telecom":[{"system","value","use"}],"addresses":[{"text","province","city",
// "district","line","postal_code"}],"deceased","deceased_at","ethnic_group"}.
// read_demographics() takes the fields a booking needs. The _json forms
// parse what write_ wrote (one rendering), for answers built as nlohmann trees.
void write_demographics(api::json_out& j, const events::v1::Demographics& d);
nlohmann::json demographics_json(const events::v1::Demographics& d);
result<void> read_demographics(const nlohmann::json& j, events::v1::Demographics& out);
// [{"system","value"[,"type":"IDENTIFIER_TYPE_MRN"]}]
void write_identifiers(api::json_out& j, const events::v1::Subject& s);
nlohmann::json identifiers_json(const events::v1::Subject& s);
result<void> read_identifiers(const nlohmann::json& j, events::v1::Subject& out);

// Publishes the command (unless this instance knows its decision already)
// and waits for the decision, at most `timeout` (then errc::timeout).
boost::asio::awaitable<result<bk::decision>> submit(bk::service& svc, events::v1::Envelope command,
                                                    std::chrono::milliseconds timeout);

}  // namespace yilian::app::booking
