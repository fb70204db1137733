// A fresh directory under the system's temporary directory for one test,
// removed with everything in it when the test is done with it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace yilian::test {

class temp_dir {
 public:
  // The directory is <tmp>/<prefix>-XXXXXX: the prefix names the test that
  // left it behind when a crash skips the destructor.
  explicit temp_dir(std::string_view prefix) {
    std::string pattern = (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // A path below the directory, e.g. file("bus/log.db"); creates nothing
  // (the stores create their own folders).
  std::filesystem::path file(const std::filesystem::path& relative) const { return path_ / relative; }

  // Writes `text` to a file below the directory, creating its folders.
  void write(const std::filesystem::path& relative, const std::string& text) const {
    std::filesystem::create_directories(file(relative).parent_path());
    std::ofstream(file(relative), std::ios::binary) << text;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace yilian::test
