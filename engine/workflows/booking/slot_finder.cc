#include "engine/workflows/booking/slot_finder.h"

namespace yilian::workflows::booking {

bool worth_next_slot(const refusal& r) {
  return r.code == "slot_taken" || r.code == "over_share" || r.code == "blocked";
}

result<slot_attempts> book_earliest(const service& svc, std::span<const slot_query> queries, seconds now,
                                    const std::function<ev::Envelope(const free_slot&, std::size_t)>& make,
                                    const std::function<result<decision>(const ev::Envelope&)>& decide) {
  const auto slots = svc.read([&](const ledger& l) {
    for (const auto& q : queries) {
      auto found = l.search(q, now);
      if (!found.empty()) return found;
    }
    return std::vector<free_slot>{};
  });
  slot_attempts out{.found = !slots.empty()};
  for (const auto& s : slots) {
    auto d = decide(make(s, out.tried++));
    if (!d) return std::unexpected(d.error());
    if (!d->refused) {
      out.booked = std::move(*d);
      out.slot = s;
      out.refused.reset();
      return out;
    }
    out.refused = d->refused;
    if (!worth_next_slot(*d->refused)) return out;
  }
  return out;
}

}  // namespace yilian::workflows::booking
