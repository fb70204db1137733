// Reading back the API's audit log (engine/api/audit.h) in tests: one JSON
// record a line.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace yilian::test {

// The records written so far, parsed. A last line without its newline is
// still being written (the log writes a buffer at a time) and is left out.
inline std::vector<nlohmann::json> audit_records(const std::filesystem::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline after it
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// Whether one of the records is this principal's action on this resource with
// this outcome, naming `id` among its ids (any ids when `id` is empty).
inline bool audit_has(const std::vector<nlohmann::json>& records, const std::string& principal,
                      const std::string& action, const std::string& resource, const std::string& id,
                      const std::string& outcome) {
  for (const auto& r : records) {
    if (r.value("principal", "") != principal || r.value("action", "") != action ||
        r.value("resource", "") != resource || r.value("outcome", "") != outcome) {
      continue;
    }
    if (id.empty()) return true;
    for (const auto& x : r["ids"]) {
      if (x == id) return true;
    }
  }
  return false;
}

}  // namespace yilian::test
