// What a fuzz target asserts with: FUZZ_CHECK(cond) << "context"; aborts with
// the condition, the place and the context when cond is false. Unlike assert()
// it is on in every build type (the replay tests run RelWithDebInfo, where
// NDEBUG is defined), and an abort is what both libFuzzer and CTest see as a
// failure.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>
#include <string_view>

namespace yilian::fuzz {

class check_failure {
 public:
  check_failure(const char* condition, const char* file, int line) {
    out_ << file << ':' << line << ": fuzz invariant failed: " << condition;
  }
  check_failure(const check_failure&) = delete;
  check_failure& operator=(const check_failure&) = delete;
  [[noreturn]] ~check_failure() {
    const std::string text = out_.str();
    std::fprintf(stderr, "%s\n", text.c_str());
    std::fflush(stderr);
    std::abort();
  }
  template <class T>
  check_failure& operator<<(const T& v) {
    out_ << (first_ ? " -- " : "") << v;
    first_ = false;
    return *this;
  }

 private:
  std::ostringstream out_;
  bool first_ = true;
};

// Printable form of arbitrary bytes for failure messages: "a\x00b".
inline std::string printable(std::string_view s, std::size_t limit = 200) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  if (s.size() > limit) out += "...";
  return out;
}

}  // namespace yilian::fuzz

// The body of every LLVMFuzzerTestOneInput: runs `run(input)` and turns an
// escaping exception into an invariant failure (parsers must never throw on
// input from outside).
#define YILIAN_FUZZ_ENTRY(run)                                                                  \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {          \
    const std::string_view input(reinterpret_cast<const char*>(data), size);                   \
    try {                                                                                       \
      run(input);                                                                               \
    } catch (const std::exception& e) {                                                         \
      FUZZ_CHECK(false) << "exception escaped: " << e.what() << ::yilian::fuzz::printable(input); \
    } catch (...) {                                                                             \
      FUZZ_CHECK(false) << "non-standard exception escaped" << ::yilian::fuzz::printable(input);  \
    }                                                                                           \
    return 0;                                                                                   \
  }

// The stream after the macro is only evaluated when the check fails. A loop
// rather than if/else, so that it nests under an unbraced `if` without a
// dangling else; it never repeats: check_failure's destructor aborts.
#define FUZZ_CHECK(cond) \
  while (!(cond)) ::yilian::fuzz::check_failure(#cond, __FILE__, __LINE__)
