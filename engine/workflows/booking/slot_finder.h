// yilian::workflows::booking::book_earliest — books the earliest free slot for
// a new booking: searches the ledger, sends a BOOK command for the first slot
// found and, when the writer refuses it because the slot went meanwhile
// (slot_taken), the requester's share of that day is used up (over_share) or
// the owner closed the time (blocked), tries the next slot.
//
// Shared by the booking feed (OrderPlaced from a hospital) and the
// recurring-exam scheduler (engine/workflows/recurring). It runs on the
// caller's thread and blocks while the caller's `decide` waits for each
// decision; it reads the ledger only through service::read.
//
// Every command of one booking names the same booking id, so at most one of
// them can create it; their command ids must derive from the attempt number,
// so that a caller repeating the whole search after a crash gets the first
// answers back for the commands that were already decided.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <span>

#include "engine/core/error.h"
#include "engine/workflows/booking/service.h"

namespace yilian::workflows::booking {

// Whether a refused BOOK is worth trying on the next free slot.
bool worth_next_slot(const refusal& r);

// What book_earliest did.
struct slot_attempts {
  bool found = false;                // some query yielded a free slot
  std::optional<decision> booked;    // the accepting decision (its booking)
  std::optional<free_slot> slot;     // the slot it was booked on
  std::optional<refusal> refused;    // the last refusal when nothing was booked
  std::size_t tried = 0;             // BOOK commands decided
};

// `queries` are tried in order: the first that yields free slots (searched at
// `now`) gives the candidates, earliest first, at most query.limit of them
// (e.g. the named machine, else any machine doing the exam). For each
// candidate `make(slot, attempt)` builds the BOOK command (attempt = 0, 1,
// ...) and `decide(command)` sends it durably and waits for its decision. An
// error from `decide` ends the attempts and is returned as is; so is the first
// refusal that worth_next_slot() does not cover.
result<slot_attempts> book_earliest(const service& svc, std::span<const slot_query> queries, seconds now,
                                    const std::function<ev::Envelope(const free_slot&, std::size_t)>& make,
                                    const std::function<result<decision>(const ev::Envelope&)>& decide);

}  // namespace yilian::workflows::booking
