// yilian::config — loads and validates a consortium: consortium.yaml plus one
// profile YAML per hospital (schemas/yilian/config/v1).
//
// The protobuf messages are the configuration types; this header adds the
// loading, the checks and a few resolved values the app needs (absolute
// paths, the effective topic list). Loading happens once at startup, on the
// caller's thread; the result is a plain value, safe to share read-only.
//
//   auto cfg = yilian::config::load_consortium("deploy/examples/consortium");
//   if (!cfg) { std::cerr << cfg.error().message; return 2; }
//   cfg->consortium.http().port();     // defaults already applied
//
// Errors: load_consortium fails with errc::config_error whose message lists
// every problem, one per line ("file:line:column: field: message");
// validate_consortium returns them as a report.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/config/diagnostics.h"
#include "engine/core/error.h"
#include "yilian/config/v1/consortium.pb.h"
#include "yilian/config/v1/profile.pb.h"
#include "yilian/events/v1/topics.pb.h"

namespace yilian::config {

// One hospital's profile as loaded.
struct hospital_profile {
  std::string hospital_id;
  std::filesystem::path file;  // absolute
  v1::HospitalProfile profile;  // defaults applied
};

// A topic with every default resolved; mirrors bus::topic_spec.
struct topic_settings {
  std::string name;
  std::int32_t partitions = 1;
  std::int64_t retention_ms = -1;     // -1 = keep forever
  std::int64_t retention_bytes = -1;  // per partition; -1 = unbounded
  bool operator==(const topic_settings&) const = default;
};

struct loaded_consortium {
  std::filesystem::path file;       // absolute path of consortium.yaml
  std::filesystem::path directory;  // its directory: relative paths in the config resolve against it
  std::filesystem::path data_dir;   // absolute (Consortium.data_dir, or load_options.data_dir)
  std::filesystem::path bus_dir;    // absolute embedded log directory; empty for Kafka

  // Everything from consortium.yaml, with the defaults documented in
  // consortium.proto filled in: bus kind always set, http.port always
  // present, logging.level set, equipment schedule time zones set, token
  // hashes in lower case, hospitals' profile paths set.
  v1::Consortium consortium;
  // One per hospital, in the order of consortium.hospitals.
  std::vector<hospital_profile> profiles;
  // The standard topics (patient, booking, referral, report, outbound,
  // deadletter, careplan, identity, in that order: the schema's Topic table)
  // merged with consortium.topics, then any other configured topics in file
  // order. The identity log always has one partition.
  std::vector<topic_settings> topics;

  const v1::Hospital* hospital(std::string_view id) const;
  const v1::HospitalProfile* profile(std::string_view hospital_id) const;
  const v1::Equipment* equipment(std::string_view id) const;
  // The principal whose token_sha256 equals `sha256_hex` (any case).
  const v1::Principal* principal_by_token_sha256(std::string_view sha256_hex) const;
  // `path` made absolute against `directory` (for TLS files and the like).
  std::filesystem::path resolve(std::string_view path) const;
  bool uses_kafka() const { return consortium.bus().has_kafka(); }
};

struct load_options {
  // Overrides Consortium.data_dir (e.g. from a --data-dir flag); relative to
  // the current directory.
  std::optional<std::filesystem::path> data_dir;
};

struct validation_result {
  config_report report;
  std::optional<loaded_consortium> loaded;  // set exactly when report.ok()
};

// Reads `dir_or_file` (a directory holding consortium.yaml, or the file
// itself) and every hospital's profile, applies defaults and runs all checks.
// Never throws for bad input; every problem is in the report.
validation_result validate_consortium(const std::filesystem::path& dir_or_file,
                                      const load_options& options = {});

// validate_consortium, as a result: errc::config_error with every diagnostic,
// one per line, in error::message (and the consortium file in error::where).
result<loaded_consortium> load_consortium(const std::filesystem::path& dir_or_file,
                                          const load_options& options = {});

struct standard_topic {
  events::v1::Topic topic;
  std::string name;           // "yilian.patient.v1"
  std::string partition_key;  // what the record key is
};

// The topics table of yilian/events/v1/topics.proto, read from its descriptor.
std::span<const standard_topic> standard_topics();
// "yilian.patient.v1" for TOPIC_PATIENT; empty for TOPIC_UNSPECIFIED.
std::string_view topic_name(events::v1::Topic topic);

// DICOM modality code of a Modality ("CT" for MODALITY_CT); empty for
// MODALITY_UNSPECIFIED.
std::string modality_code(v1::Modality m);

// The Envelope body message names ("ReportIssued", ...) that outbound
// endpoints may route, read from the Envelope's oneof.
std::vector<std::string> event_type_names();

}  // namespace yilian::config
