#include "engine/api/console/assets.h"

namespace yilian::console {

const asset* find_asset(std::string_view name) noexcept {
  // A handful of files: a linear scan beats any index.
  for (const auto& a : assets()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

}  // namespace yilian::console
