// yilian::api::json_out — writes JSON text straight into a string, for the
// responses on the hot path (a booking's answer), where building a
// nlohmann::json tree first costs more than the rest of the request. Strings
// come out as nlohmann::json::dump() writes them with error_handler_t::replace:
// UTF-8 kept as is, ", \ and control characters escaped, each byte of invalid
// UTF-8 replaced by U+FFFD.
//
//   std::string s;
//   json_out j(s);
//   j.begin_object().key("id").value(id).key("history").begin_array();
//   ...
//   j.end_array().end_object();
//
// The writer puts the commas; it does not check that keys and values
// alternate (tests parse what it wrote back with nlohmann).
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/log.h"

namespace yilian::api {

// The one string escaper (the structured log's): appends `v` as a JSON string.
using log::append_json_string;

class json_out {
 public:
  explicit json_out(std::string& out) : out_(out) {}

  json_out& begin_object() { return open('{'); }
  json_out& end_object() { return close('}'); }
  json_out& begin_array() { return open('['); }
  json_out& end_array() { return close(']'); }

  json_out& key(std::string_view k) {
    comma();
    append_json_string(out_, k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  json_out& value(std::string_view s) {
    comma();
    append_json_string(out_, s);
    return *this;
  }
  json_out& value(const char* s) { return value(std::string_view(s)); }
  json_out& value(const std::string& s) { return value(std::string_view(s)); }
  json_out& value(bool b) { return raw(b ? "true" : "false"); }
  json_out& value(std::int64_t n) { return number(n); }
  json_out& value(std::uint64_t n) { return number(n); }
  json_out& value(std::int32_t n) { return value(static_cast<std::int64_t>(n)); }
  json_out& value(std::uint32_t n) { return value(static_cast<std::uint64_t>(n)); }
  json_out& null() { return raw("null"); }
  // A value already in JSON (a number formatted elsewhere, a nested document).
  json_out& raw(std::string_view text) {
    comma();
    out_ += text;
    return *this;
  }

  // key(k).value(v) in one call.
  template <class T>
  json_out& field(std::string_view k, const T& v) {
    return key(k).value(v);
  }
  // The field only when the text is not empty (how the API leaves out unset strings).
  json_out& field_if(std::string_view k, std::string_view v) {
    if (!v.empty()) key(k).value(v);
    return *this;
  }

 private:
  template <class T>
  json_out& number(T n) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, n);
    return raw(std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  }
  json_out& open(char c) {
    comma();
    out_ += c;
    first_.push_back(true);
    return *this;
  }
  json_out& close(char c) {
    out_ += c;
    first_.pop_back();
    return *this;
  }
  void comma() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (first_.back()) {
      first_.back() = false;
    } else {
      out_ += ',';
    }
  }

  std::string& out_;
  std::vector<bool> first_;  // per open object/array: nothing written in it yet
  bool after_key_ = false;
};

}  // namespace yilian::api
