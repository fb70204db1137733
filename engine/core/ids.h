// Random identifiers for things yilian names itself (commands, bookings,
// consumer group members): 128 bits from a per-thread generator seeded by
// std::random_device, as lowercase hex. Not secrets: never use for tokens.
#pragma once

#include <string>
#include <string_view>

namespace yilian {

// "<prefix><32 hex digits>", e.g. random_id("bk-") -> "bk-4f1c...".
std::string random_id(std::string_view prefix = {});

// "<prefix><16 hex digits>" of a stable 64-bit hash (FNV-1a) of `text`:
// deterministic ids from idempotency keys.
std::string stable_id(std::string_view prefix, std::string_view text);

}  // namespace yilian
