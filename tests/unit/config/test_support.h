// Helpers for the config tests: run from the repository root so that file
// names in diagnostics are the short relative paths the tests spell out.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/config/config.h"

namespace yilian::config::testing {

inline std::filesystem::path repo_root() {
  if (const char* dir = std::getenv("YILIAN_SOURCE_DIR"); dir != nullptr && *dir != '\0') return dir;
  return YILIAN_REPO_ROOT;
}

// Validates tests/data/config/<name> (or any repo-relative path) from the
// repository root and returns the diagnostics as text lines.
inline validation_result validate_from_root(const std::string& relative) {
  std::filesystem::current_path(repo_root());
  return validate_consortium(relative);
}

inline std::vector<std::string> errors_of(const std::string& relative) {
  return validate_from_root(relative).report.lines();
}

}  // namespace yilian::config::testing
