// yilian::workflows::booking::calendar — when a shared machine works, from
// its consortium config (Equipment: weekly schedule in its time zone, blocked
// periods, exam types and their slot lengths, the consortium's share).
//
// Slots are derived, not stored: an exam of length d can start at a window's
// start + k·d for as long as it ends inside the window. Whether such a slot
// is free is the ledger's business (bookings, holds, owner blocks).
//
// The consortium share caps how many minutes of one local day other
// hospitals may book: share% of that day's working minutes, rounded down.
// The owner's own bookings through yilian do not count against it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/error.h"
#include "engine/core/time_zone.h"
#include "yilian/config/v1/consortium.pb.h"

namespace yilian::workflows::booking {

using seconds = std::chrono::sys_seconds;

struct interval {
  seconds start;
  seconds end;
  bool overlaps(const interval& o) const { return start < o.end && o.start < end; }
  bool contains(const interval& o) const { return start <= o.start && o.end <= end; }
  std::chrono::minutes length() const { return std::chrono::duration_cast<std::chrono::minutes>(end - start); }
  bool operator==(const interval&) const = default;
};

struct blocked_period {
  interval when;
  std::string reason;
};

class calendar {
 public:
  // Errors (config_error) name the equipment and field; the config loader has
  // checked the formats already, so these are bugs or hand-built configs.
  static result<calendar> compile(const config::v1::Equipment& equipment, std::string_view default_time_zone);

  const std::string& equipment_id() const { return id_; }
  // The Equipment it was compiled from (like exams(), it points into the
  // config, which outlives the calendar).
  const config::v1::Equipment& equipment() const { return *equipment_; }
  const std::string& hospital() const { return hospital_; }
  const time_zone& zone() const { return zone_; }
  std::uint32_t share_percent() const { return share_percent_; }

  // Working windows overlapping [from, to), whole (not clipped), in time
  // order. Config blocked periods are NOT removed here (see blocked()).
  std::vector<interval> windows(seconds from, seconds to) const;
  // The working window that contains `slot` whole, if any.
  std::optional<interval> window_containing(const interval& slot) const;
  // Blocked periods from the config, in time order.
  const std::vector<blocked_period>& blocked() const { return blocked_; }

  // Slot length of an exam type this machine does; nullopt when it does not.
  std::optional<std::chrono::minutes> duration_of(std::string_view exam_code) const;
  const config::v1::ExamType* exam(std::string_view exam_code) const;
  const std::vector<const config::v1::ExamType*>& exams() const { return exams_; }

  // Local day (days since 1970-01-01 on this machine's wall clock) of an instant.
  std::int64_t local_day(seconds t) const;
  // Minutes the consortium may book on local day `day`.
  std::int64_t share_minutes(std::int64_t day) const;

 private:
  struct window_rule {
    int weekday = 0;  // 0 = Monday
    std::int32_t start_minute = 0;
    std::int32_t end_minute = 0;  // up to 24*60
  };
  const config::v1::Equipment* equipment_ = nullptr;
  std::string id_;
  std::string hospital_;
  time_zone zone_;
  std::uint32_t share_percent_ = 0;
  std::vector<window_rule> rules_;  // sorted by weekday, start
  std::vector<blocked_period> blocked_;
  std::vector<const config::v1::ExamType*> exams_;
};

}  // namespace yilian::workflows::booking
