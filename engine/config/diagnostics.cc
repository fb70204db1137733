#include "engine/config/diagnostics.h"

namespace yilian::config {

namespace {

std::string position(const diagnostic& d) {
  std::string out = d.file;
  if (d.line > 0) {
    out += ':';
    out += std::to_string(d.line);
    if (d.column > 0) {
      out += ':';
      out += std::to_string(d.column);
    }
  }
  return out;
}

}  // namespace

std::string diagnostic::to_string() const {
  std::string out = position(*this);
  out += ": ";
  if (!field.empty()) {
    out += field;
    out += ": ";
  }
  out += message;
  return out;
}

error diagnostic::to_error() const {
  std::string where = position(*this);
  if (!field.empty()) {
    where += ' ';
    where += field;
  }
  return error::make(errc::config_error, message, std::move(where));
}

std::string config_report::to_string() const {
  std::string out;
  for (const auto& d : diagnostics) {
    out += d.to_string();
    out += '\n';
  }
  return out;
}

std::vector<error> config_report::errors() const {
  std::vector<error> out;
  out.reserve(diagnostics.size());
  for (const auto& d : diagnostics) out.push_back(d.to_error());
  return out;
}

std::vector<std::string> config_report::lines() const {
  std::vector<std::string> out;
  out.reserve(diagnostics.size());
  for (const auto& d : diagnostics) out.push_back(d.to_string());
  return out;
}

}  // namespace yilian::config
