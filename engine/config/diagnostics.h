// yilian::config diagnostics — what is wrong with a configuration file, and
// exactly where: file, line, column and the field path inside the document.
//
//   deploy/examples/consortium/consortium.yaml:42:7: equipment[3].schedule.days[1].start: "25:00" is not a time of day ...
//
// Configuration is checked as a whole and every problem is reported, not just
// the first, so an operator fixes a file in one go.
#pragma once

#include <string>
#include <vector>

#include "engine/core/error.h"

namespace yilian::config {

struct diagnostic {
  std::string file;     // as the caller named it (relative paths stay relative)
  int line = 0;         // 1-based; 0 = the file as a whole (cannot be read, ...)
  int column = 0;       // 1-based; 0 when line is 0
  std::string field;    // "equipment[3].schedule.days[1].start"; empty = the document / YAML syntax
  std::string message;  // what is wrong, and what would be right

  // "file:line:column: field: message" (parts that are empty are left out).
  std::string to_string() const;
  // errc::config_error; message = `message`, where = "file:line:column field".
  error to_error() const;
  bool operator==(const diagnostic&) const = default;
};

// Every problem found in a configuration, in file order and, within a file,
// in line order.
struct config_report {
  std::vector<diagnostic> diagnostics;

  bool ok() const noexcept { return diagnostics.empty(); }
  // One diagnostic per line.
  std::string to_string() const;
  std::vector<error> errors() const;
  // Just the to_string() of each, for tests and logs.
  std::vector<std::string> lines() const;
};

}  // namespace yilian::config
