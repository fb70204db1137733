#include "engine/core/ids.h"

#include <cstdint>
#include <random>

namespace yilian {

namespace {

void append_hex(std::string& out, std::uint64_t v) {
  constexpr char digits[] = "0123456789abcdef";
  for (int shift = 60; shift >= 0; shift -= 4) out += digits[(v >> shift) & 0xF];
}

}  // namespace

std::string random_id(std::string_view prefix) {
  thread_local std::mt19937_64 gen = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }();
  std::string out(prefix);
  append_hex(out, gen());
  append_hex(out, gen());
  return out;
}

std::string stable_id(std::string_view prefix, std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  std::string out(prefix);
  append_hex(out, h);
  return out;
}

}  // namespace yilian
