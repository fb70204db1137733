#pragma once

#include <string_view>

namespace yilian::app {

// "0.1.0", from the CMake project version.
constexpr std::string_view version() noexcept { return YILIAN_VERSION; }

}  // namespace yilian::app
