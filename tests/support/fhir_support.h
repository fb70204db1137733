// What the FHIR facades' tests share: the OperationOutcome of an error reply,
// and the resources they got back handed to HAPI FHIR's validator
// (tests/peers/fhir) when YILIAN_FHIR_DUMP_DIR is set.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/http_client.h"

namespace yilian::test {

// Writes `resource` as <YILIAN_FHIR_DUMP_DIR>/<name>.json; nothing when the
// variable is unset or empty.
inline void dump(const std::string& name, const nlohmann::json& resource) {
  const char* dir = std::getenv("YILIAN_FHIR_DUMP_DIR");
  if (dir == nullptr || *dir == '\0') return;
  std::filesystem::create_directories(dir);
  std::ofstream(std::filesystem::path(dir) / (name + ".json")) << resource.dump(2);
}

// The first issue's code of an OperationOutcome reply.
inline std::string issue_code(const http_reply& r) {
  if (r.body.value("resourceType", "") != "OperationOutcome" || r.body["issue"].empty()) return "(no OperationOutcome)";
  return r.body["issue"][0].value("code", "");
}
// The first issue's diagnostics of an OperationOutcome reply; "" if none.
inline std::string diagnostics(const http_reply& r) {
  if (r.body.value("resourceType", "") != "OperationOutcome" || r.body["issue"].empty()) return "";
  return r.body["issue"][0].value("diagnostics", "");
}

}  // namespace yilian::test
