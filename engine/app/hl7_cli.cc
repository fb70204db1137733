#include "engine/app/hl7_cli.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include "adapters/hl7v2/ack.h"
#include "adapters/hl7v2/charset.h"
#include "adapters/hl7v2/mapping.h"
#include "adapters/hl7v2/message.h"
#include "adapters/hl7v2/mllp_client.h"
#include "engine/config/config.h"
#include "engine/config/yaml_proto.h"
#include "engine/core/hex.h"

namespace yilian::app {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using nlohmann::json;

namespace {

result<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return fail(errc::not_found, "cannot open " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return fail(errc::io_error, "cannot read " + p.string());
  return s.str();
}

std::string sha256_hex(std::string_view bytes) {
  std::array<unsigned char, SHA256_DIGEST_LENGTH> d{};
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), d.data());
  return to_hex(d);
}

// The byte offset an error names: "at byte N" in the message, else the
// position of the segment/field its `where` names in the parsed message.
std::optional<std::size_t> error_offset(const error& e, const hl7v2::message* msg) {
  for (const std::string* s : {&e.message, &e.where}) {
    const std::size_t at = s->find("byte ");
    if (at == std::string::npos) continue;
    std::size_t n = 0;
    std::size_t i = at + 5;
    bool digits = false;
    while (i < s->size() && (*s)[i] >= '0' && (*s)[i] <= '9') {
      n = n * 10 + static_cast<std::size_t>((*s)[i] - '0');
      ++i;
      digits = true;
    }
    if (digits) return n;
  }
  if (msg == nullptr) return std::nullopt;
  const hl7v2::location loc = hl7v2::parse_location(e.where);
  if (loc.segment.empty()) return std::nullopt;
  const auto seg = msg->find(loc.segment, loc.segment_seq > 0 ? loc.segment_seq - 1 : 0);
  if (!seg) return std::nullopt;
  return loc.field > 0 ? seg->field_offset(loc.field) : seg->offset();
}

json error_json(const error& e, const hl7v2::message* msg) {
  json j{{"code", std::string(to_string(e.code))}, {"where", e.where}, {"message", e.message}};
  const hl7v2::location loc = hl7v2::parse_location(e.where);
  if (!loc.segment.empty()) {
    j["segment"] = loc.segment;
    if (loc.field > 0) j["field"] = loc.field;
  }
  if (auto off = error_offset(e, msg)) j["offset"] = *off;
  return j;
}

void report_error(const std::string& file, std::size_t index, const error& e, const hl7v2::message* msg) {
  json j = error_json(e, msg);
  std::cout << json{{"file", file}, {"message", index}, {"error", j}}.dump() << '\n';
  std::cerr << "yilian: " << file << ": message " << index << ": " << to_string(e.code);
  if (!e.where.empty()) std::cerr << " at " << e.where;
  if (j.contains("offset")) std::cerr << " (byte " << j["offset"].get<std::size_t>() << ")";
  std::cerr << ": " << e.message << '\n';
}

std::chrono::system_clock::time_point parse_time(const std::string& text, bool& ok) {
  google::protobuf::Timestamp ts;
  ok = google::protobuf::util::TimeUtil::FromString(text, &ts);
  return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(ts.seconds()) + std::chrono::nanoseconds(ts.nanos())));
}

// A bare profile YAML, parsed with the config schema (defaults are applied by
// the mapper where it needs them).
std::optional<config::v1::HospitalProfile> load_profile(const fs::path& path) {
  auto text = read_file(path);
  if (!text) {
    std::cerr << "yilian: " << text.error().message << '\n';
    return std::nullopt;
  }
  config::v1::HospitalProfile profile;
  config::source_map locations;
  config::config_report report;
  if (!config::parse_yaml(*text, path.string(), profile, locations, report) || !report.ok()) {
    std::cerr << report.to_string();
    return std::nullopt;
  }
  if (profile.default_charset() == config::v1::CHARSET_UNSPECIFIED) profile.set_default_charset(config::v1::CHARSET_UTF8);
  return profile;
}

}  // namespace

std::vector<std::string_view> split_messages(std::string_view bytes) {
  std::vector<std::size_t> starts;
  for (std::size_t i = bytes.find("MSH"); i != std::string_view::npos; i = bytes.find("MSH", i + 3)) {
    const bool line_start = i == 0 || bytes[i - 1] == '\r' || bytes[i - 1] == '\n' || bytes[i - 1] == '\x0b';
    if (line_start) starts.push_back(i);
  }
  std::vector<std::string_view> out;
  for (std::size_t k = 0; k < starts.size(); ++k) {
    const std::size_t end = k + 1 < starts.size() ? starts[k + 1] : bytes.size();
    std::string_view m = bytes.substr(starts[k], end - starts[k]);
    // Trailing framing and blank lines belong to no message; the segment
    // terminator of the last segment does.
    auto strip = [](char ch) { return ch == '\x1c' || ch == '\x0b' || ch == '\r' || ch == '\n' || ch == ' ' || ch == '\t'; };
    std::size_t keep = m.size();
    while (keep > 0 && strip(m[keep - 1])) --keep;
    if (keep < m.size() && m[keep] == '\r') ++keep;
    m = m.substr(0, keep);
    out.push_back(m);
  }
  return out;
}

int run_hl7_parse(const hl7_parse_options& options) {
  std::optional<config::loaded_consortium> consortium;
  if (options.config) {
    auto loaded = config::load_consortium(*options.config);
    if (!loaded) {
      std::cerr << loaded.error().message << '\n';
      return 2;
    }
    consortium = std::move(*loaded);
  }
  std::optional<config::v1::HospitalProfile> own_profile;
  const config::v1::HospitalProfile* profile = nullptr;
  std::string hospital = options.hospital;
  if (options.profile) {
    own_profile = load_profile(*options.profile);
    if (!own_profile) return 2;
    profile = &*own_profile;
    if (hospital.empty()) hospital = own_profile->hospital();
  } else if (!options.hospital.empty()) {
    if (!consortium) {
      std::cerr << "yilian: --hospital needs --config (the consortium holding that hospital's profile)\n";
      return 2;
    }
    profile = consortium->profile(options.hospital);
    if (profile == nullptr) {
      std::cerr << "yilian: no hospital \"" << options.hospital << "\" in " << consortium->file.string() << '\n';
      return 2;
    }
  }
  auto mapper = hl7v2::mapper::compile(consortium ? &*consortium : nullptr, profile, hospital);
  if (!mapper) {
    std::cerr << "yilian: " << mapper.error().message << '\n';
    return 2;
  }
  std::chrono::system_clock::time_point recorded_at = std::chrono::system_clock::now();
  if (options.recorded_at) {
    bool ok = false;
    recorded_at = parse_time(*options.recorded_at, ok);
    if (!ok) {
      std::cerr << "yilian: --recorded-at: not an RFC 3339 time: " << *options.recorded_at << '\n';
      return 2;
    }
  }
  auto fallback = profile != nullptr ? profile->default_charset() : config::v1::CHARSET_UTF8;
  if (!options.charset.empty()) {
    auto cs = hl7v2::charset_from_msh18(options.charset);
    if (!cs || *cs == config::v1::CHARSET_UNSPECIFIED) {
      std::cerr << "yilian: --charset: unknown character set " << options.charset << '\n';
      return 2;
    }
    fallback = *cs;
  }

  bool all_ok = true;
  for (const auto& file : options.files) {
    auto bytes = read_file(file);
    if (!bytes) {
      std::cerr << "yilian: " << bytes.error().message << '\n';
      all_ok = false;
      continue;
    }
    std::error_code ec;
    const fs::path absolute = fs::absolute(file, ec).lexically_normal();
    const auto messages = split_messages(*bytes);
    if (messages.empty()) {
      report_error(file.string(), 0, error::make(errc::parse_error, "no MSH segment in the file"), nullptr);
      all_ok = false;
      continue;
    }
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const std::string_view raw = messages[i];
      const std::size_t index = i + 1;
      events::v1::ClaimCheck raw_ref;
      raw_ref.set_sha256(sha256_hex(raw));
      raw_ref.set_size_bytes(raw.size());
      raw_ref.set_content_type("application/hl7-v2");
      auto decoded = hl7v2::decode_message(raw, fallback);
      if (!decoded) {
        report_error(file.string(), index, decoded.error(), nullptr);
        all_ok = false;
        continue;
      }
      raw_ref.set_charset(std::string(hl7v2::msh18_name(decoded->source)));
      auto msg = hl7v2::message::parse(std::move(decoded->utf8));
      if (!msg) {
        report_error(file.string(), index, msg.error(), nullptr);
        all_ok = false;
        continue;
      }
      if (options.raw_store_uri) {
        const std::string owner = !mapper->hospital().empty() ? mapper->hospital() : msg->msh().component(4, 1);
        raw_ref.set_uri("raw://" + owner + "/" + raw_ref.sha256());
      } else {
        raw_ref.set_uri("file://" + absolute.string() + (messages.size() > 1 ? "#" + std::to_string(index) : ""));
      }
      auto events = mapper->map(*msg, raw_ref, recorded_at);
      if (!events) {
        report_error(file.string(), index, events.error(), &*msg);
        all_ok = false;
        continue;
      }
      for (const auto& e : *events) {
        std::string envelope;
        if (!google::protobuf::util::MessageToJsonString(*e.envelope, &envelope).ok()) {
          std::cerr << "yilian: an event could not be written as JSON\n";
          return 2;
        }
        std::cout << json{{"topic", std::string(config::topic_name(e.topic))},
                          {"key", e.key},
                          {"envelope", json::parse(envelope)}}
                         .dump()
                  << '\n';
      }
    }
  }
  return all_ok ? 0 : 1;
}

namespace {

// CR as the only line end: what MLLP peers expect between segments.
std::string with_cr(std::string_view m) {
  std::string out;
  out.reserve(m.size() + 1);
  for (std::size_t i = 0; i < m.size(); ++i) {
    const char ch = m[i];
    if (ch == '\x0b' || ch == '\x1c') continue;
    if (ch == '\r' && i + 1 < m.size() && m[i + 1] == '\n') continue;  // CRLF -> CR
    out += ch == '\n' ? '\r' : ch;
  }
  if (out.empty() || out.back() != '\r') out += '\r';
  return out;
}

asio::awaitable<int> send_all(const hl7_send_options& options) {
  // The executor and the options first: g++ 12 mishandles co_await inside a
  // constructor's argument list.
  const asio::any_io_executor ex = co_await asio::this_coro::executor;
  hl7v2::client_options client_opts;
  client_opts.host = options.host;
  client_opts.port = options.port;
  client_opts.connect_timeout = std::chrono::milliseconds(options.timeout_ms);
  client_opts.ack_timeout = std::chrono::milliseconds(options.timeout_ms);
  hl7v2::mllp_client client(ex, std::move(client_opts));
  bool all_ok = true;
  for (const auto& file : options.files) {
    auto bytes = read_file(file);
    if (!bytes) {
      std::cerr << "yilian: " << bytes.error().message << '\n';
      all_ok = false;
      continue;
    }
    const auto messages = split_messages(*bytes);
    if (messages.empty()) {
      std::cerr << "yilian: " << file.string() << ": no MSH segment in the file\n";
      all_ok = false;
      continue;
    }
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const std::string payload = with_cr(messages[i]);
      const hl7v2::ack_header sent = hl7v2::header_from_raw(payload);
      json line{{"file", file.string()}, {"message", i + 1}, {"control_id", sent.control_id}};
      if (!client.connected()) {
        auto c = co_await client.connect();
        if (!c) {
          line["error"] = json{{"code", std::string(to_string(c.error().code))}, {"message", c.error().message}};
          std::cout << line.dump() << '\n';
          std::cerr << "yilian: " << c.error().describe() << '\n';
          co_return 1;
        }
      }
      auto reply = co_await client.exchange(payload);
      if (!reply) {
        line["error"] = json{{"code", std::string(to_string(reply.error().code))}, {"message", reply.error().message}};
        std::cout << line.dump() << '\n';
        all_ok = false;
        continue;  // the client closed the connection; the next message reconnects
      }
      auto ack = hl7v2::parse_ack(*reply);
      if (!ack) {
        line["error"] = json{{"code", std::string(to_string(ack.error().code))}, {"message", ack.error().message}};
        std::cout << line.dump() << '\n';
        all_ok = false;
        continue;
      }
      line["ack"] = std::string(hl7v2::to_string(ack->code));
      line["acknowledged"] = ack->acknowledged_control_id;
      line["text"] = ack->text;
      line["error_code"] = ack->error_code;
      std::cout << line.dump() << '\n';
      if (!hl7v2::is_positive(ack->code)) all_ok = false;
    }
  }
  client.close();
  co_return all_ok ? 0 : 1;
}

}  // namespace

int run_hl7_send(const hl7_send_options& options) {
  if (options.port == 0) {
    std::cerr << "yilian: --port is required\n";
    return 2;
  }
  asio::io_context io;
  int rc = 1;
  asio::co_spawn(io, send_all(options), [&rc](std::exception_ptr ep, int r) {
    if (ep) {
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        std::cerr << "yilian: " << e.what() << '\n';
      }
      rc = 2;
      return;
    }
    rc = r;
  });
  io.run();
  return rc;
}

}  // namespace yilian::app
