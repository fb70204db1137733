// `yilian hl7 parse` and `yilian hl7 send`: an integration engineer's tools
// for trying a hospital's sample messages before (and while) writing its
// profile, and for poking an MLLP listener.
//
// Files may hold several messages: a message starts at "MSH" at the start of
// the file or of a line (after CR or LF). MLLP framing bytes (VT, FS) around
// messages are dropped. See split_messages.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace yilian::app {

struct hl7_parse_options {
  // A hospital profile YAML (HospitalProfile). Alone: mapped without the
  // consortium (other hospitals' facility ids, equipment and tiers unknown).
  std::optional<std::filesystem::path> profile;
  // A consortium directory (or consortium.yaml); with `hospital`, that
  // hospital's profile; without, the generic profile that still resolves
  // facilities and equipment through the consortium; with `profile`, the
  // given profile checked against this consortium.
  std::optional<std::filesystem::path> config;
  std::string hospital;
  std::vector<std::filesystem::path> files;
  // RFC 3339 recording time for the envelopes (default: now), so that the
  // output can be compared with golden files.
  std::optional<std::string> recorded_at;
  // Character set when MSH-18 is empty (an MSH-18 name, or GBK, GB18030,
  // UTF-8); default: the profile's default_charset, else UTF-8.
  std::string charset;
  // raw_ref.uri as the engine's raw store names it ("raw://<hospital>/<sha256>")
  // instead of "file://<absolute path>".
  bool raw_store_uri = false;
};

// Prints one JSON line per event ({"topic","key","envelope"}, protobuf JSON
// mapping) on stdout; for a message that does not map, one JSON line
// {"file","message","error":{code,where,message,segment,field,offset}} on
// stdout and a readable line on stderr. Returns 0 when every message mapped,
// 1 otherwise, 2 for bad options or configuration.
int run_hl7_parse(const hl7_parse_options& options);

struct hl7_send_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint32_t timeout_ms = 10000;  // connect, and each ACK
  std::vector<std::filesystem::path> files;
};

// Sends every message of every file over MLLP, one at a time, and prints one
// JSON line per ACK: {"file","message","control_id","ack","acknowledged",
// "text","error_code"}. Line ends inside a message are sent as CR (the
// segment terminator; LF never occurs inside GBK/GB 18030 characters, so this
// is safe for those files too). Returns 0 when every ACK was AA or CA, 1
// otherwise (including connection failures), 2 for bad options.
int run_hl7_send(const hl7_send_options& options);

// The messages of a file, as views into `bytes`.
std::vector<std::string_view> split_messages(std::string_view bytes);

}  // namespace yilian::app
