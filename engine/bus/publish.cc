#include "engine/bus/publish.h"

namespace yilian::bus {

result<position> publish_sync(bus& b, message msg) {
  std::promise<result<position>> done;
  auto future = done.get_future();
  b.publish(std::move(msg), [&done](result<position> r) { done.set_value(std::move(r)); });
  return future.get();
}

}  // namespace yilian::bus
