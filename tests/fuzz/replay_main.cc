// Replay driver for the fuzz targets in a normal (g++) build: runs every file
// named on the command line, and every regular file under every directory
// named, through LLVMFuzzerTestOneInput, in sorted order. This is how CTest
// turns each checked-in corpus (including every crasher ever kept) into a
// regression test; under clang with YILIAN_LIBFUZZER=ON libFuzzer's own main
// is linked instead (see README.md).
//
// Exit status: 0 when every input ran; 2 when an argument cannot be read or
// names no input at all (a misplaced corpus must not pass silently). A failed
// invariant aborts inside the target, after the input's name was printed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

bool read_file(const fs::path& p, std::vector<std::uint8_t>& out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      for (fs::recursive_directory_iterator it(arg, ec), end; !ec && it != end; it.increment(ec)) {
        if (it->is_regular_file(ec)) inputs.push_back(it->path());
      }
      if (ec) {
        std::fprintf(stderr, "cannot list %s: %s\n", arg.c_str(), ec.message().c_str());
        return 2;
      }
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "no such file or directory: %s\n", arg.c_str());
      return 2;
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "no inputs found in the arguments given\n");
    return 2;
  }
  std::sort(inputs.begin(), inputs.end());

  std::vector<std::uint8_t> data;
  for (const auto& p : inputs) {
    // Named before it runs, so that the log of a failing test says which input failed.
    std::fprintf(stderr, "replay %s\n", p.c_str());
    std::fflush(stderr);
    if (!read_file(p, data)) {
      std::fprintf(stderr, "cannot read %s\n", p.c_str());
      return 2;
    }
    // A heap block of exactly the input's size (never null, even when empty),
    // so that an overread is out of bounds and caught under the asan preset,
    // as it would be under libFuzzer.
    const std::unique_ptr<std::uint8_t[]> exact(new std::uint8_t[data.size()]);
    std::copy(data.begin(), data.end(), exact.get());
    LLVMFuzzerTestOneInput(exact.get(), data.size());
  }
  std::fprintf(stderr, "replayed %zu inputs\n", inputs.size());
  return 0;
}
