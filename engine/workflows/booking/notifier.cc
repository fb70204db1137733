#include "engine/workflows/booking/notifier.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "engine/core/log.h"
#include "engine/workflows/booking/service.h"

namespace yilian::workflows::booking {

namespace ev = events::v1;
using namespace std::chrono_literals;

namespace {
const auto lg = log::get("booking");
}

std::vector<std::string> notification_targets(const ev::Envelope& e) {
  if (!e.has_appointment_changed() || e.source().protocol() != ev::PROTOCOL_ENGINE) return {};
  const auto& a = e.appointment_changed();
  if (a.command_id().empty()) return {};
  const std::string& requester = a.requesting_hospital();
  const std::string& owner = a.owning_hospital();
  bool to_requester = false, to_owner = false;
  switch (a.action()) {
    case ev::BOOKING_ACTION_BOOK:
    case ev::BOOKING_ACTION_RESCHEDULE:
    case ev::BOOKING_ACTION_NO_SHOW: to_requester = to_owner = true; break;
    case ev::BOOKING_ACTION_CANCEL:
      to_requester = true;
      to_owner = a.previous_state() == ev::BOOKING_STATE_BOOKED;
      break;
    case ev::BOOKING_ACTION_CHECK_IN:
    case ev::BOOKING_ACTION_PERFORM:
    case ev::BOOKING_ACTION_REPORT:
    case ev::BOOKING_ACTION_CORRECT:
      to_requester = true;
      to_owner = a.actor_hospital() != owner;
      break;
    default: break;
  }
  std::vector<std::string> out;
  if (to_requester && !requester.empty()) out.push_back(requester);
  if (to_owner && !owner.empty() && owner != requester) out.push_back(owner);
  // The one who acted through its own system knows already.
  if (!a.actor_hospital().empty() && a.actor_hospital() == requester && a.action() != ev::BOOKING_ACTION_BOOK &&
      a.action() != ev::BOOKING_ACTION_RESCHEDULE && a.action() != ev::BOOKING_ACTION_CANCEL) {
    std::erase(out, requester);
  }
  return out;
}

std::set<std::string> appointment_listeners(const config::loaded_consortium& cfg) {
  std::set<std::string> out;
  for (const auto& p : cfg.profiles) {
    for (const auto& endpoint : p.profile.outbound()) {
      for (const auto& type : endpoint.event_types()) {
        if (type == "*" || type == "AppointmentChanged") out.insert(p.profile.hospital());
      }
    }
  }
  return out;
}

result<void> notifier::start() {
  auto c = bus_.subscribe(bus::consumer_options{.group = options_.group_prefix + "yilian-booking-notify",
                                                .topics = {options_.booking_topic},
                                                .start = bus::start_from::earliest});
  if (!c) return std::unexpected(c.error());
  consumer_ = std::move(*c);
  thread_ = std::thread([this] { run(); });
  return {};
}

void notifier::stop() {
  stopping_.store(true);
  if (thread_.joinable()) thread_.join();
  if (consumer_) consumer_->close();
  consumer_.reset();
}

void notifier::run() {
  std::vector<bus::record> retry;
  while (!stopping_.load()) {
    std::vector<bus::record> batch;
    if (!retry.empty()) {
      batch.swap(retry);
    } else {
      auto polled = consumer_->poll(100ms, 1024);
      if (!polled) {
        std::this_thread::sleep_for(200ms);
        continue;
      }
      batch = std::move(*polled);
    }
    if (batch.empty()) continue;
    std::mutex mu;
    std::condition_variable cv;
    std::size_t pending = 0;
    bool failed = false;
    ev::Envelope e;
    std::uint64_t count = 0;
    for (const auto& r : batch) {
      // Only the workflow's AppointmentChanged decisions are announced; records
      // that say what they are (headers) are skipped without decoding.
      const bool typed = std::any_of(r.headers.begin(), r.headers.end(), [](const bus::header& h) { return h.key == "type"; });
      if (typed && !header_is(r, "type", "yilian.events.v1.AppointmentChanged")) continue;
      if (!e.ParseFromString(r.value)) continue;
      for (const auto& target : notification_targets(e)) {
        if (options_.listeners && !options_.listeners->contains(target)) continue;
        {
          std::lock_guard lock(mu);
          ++pending;
        }
        ++count;
        bus_.publish(bus::message{.topic = options_.outbound_topic, .key = target, .value = r.value,
                                  .headers = {{"event_id", e.event_id()}, {"type", e.type()}}},
                     [&](result<bus::position> p) {
                       std::lock_guard lock(mu);
                       if (!p) failed = true;
                       --pending;
                       cv.notify_all();
                     });
      }
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return pending == 0; });
    }
    if (failed) {
      lg.warn("booking notifications not all published; retrying the batch", {});
      retry = std::move(batch);
      std::this_thread::sleep_for(500ms);
      continue;
    }
    if (auto committed = consumer_->commit(batch); !committed) {
      lg.warn("booking notifier commit failed (notifications may repeat)", {log::field("error", committed.error().describe())});
    }
    sent_.fetch_add(count);
  }
}

}  // namespace yilian::workflows::booking
