// Internal to yilian::config: defaults and the semantic checks that run after
// the YAML has been read into the protobuf messages.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "engine/config/diagnostics.h"
#include "engine/config/yaml_proto.h"
#include "yilian/config/v1/consortium.pb.h"
#include "yilian/config/v1/profile.pb.h"

namespace yilian::config::detail {

// One parsed YAML file: its name as shown in diagnostics and where each value
// came from.
struct document {
  std::string file;
  source_map locations;
};

// Reports problems against a document; the line and column are those of the
// value at `path`, or of the nearest enclosing value written in the file.
class reporter {
 public:
  explicit reporter(config_report& report) : report_(report) {}
  void error(const document& doc, const std::string& path, std::string message);
  source_location where(const document& doc, const std::string& path) const {
    return doc.locations.find(path);
  }

 private:
  config_report& report_;
};

inline constexpr std::string_view default_time_zone = "Asia/Shanghai";
inline constexpr std::string_view default_exam_catalogue = "urn:yilian:catalogue:exam";

void apply_defaults(v1::Consortium& c);
void apply_defaults(v1::HospitalProfile& p, const v1::Consortium& c);

// `dir` is the consortium directory as displayed (relative paths in the
// config resolve against it).
void check_consortium(const v1::Consortium& c, const document& doc, const std::filesystem::path& dir,
                      reporter& out);
void check_profile(const v1::HospitalProfile& p, const document& doc, const std::filesystem::path& dir,
                   reporter& out);

// One loaded profile, for the checks across profiles.
struct profile_ref {
  std::string hospital;
  const v1::HospitalProfile* profile = nullptr;
  const document* doc = nullptr;
};

// Checks that need every profile and the consortium: facility ids unique
// across profiles, resource_ids targets that are equipment ids.
void check_profiles_together(const v1::Consortium& c, const std::vector<profile_ref>& profiles, reporter& out);

std::string quote(std::string_view s);

}  // namespace yilian::config::detail
