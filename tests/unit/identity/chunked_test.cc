#include <catch2/catch.hpp>

#include <string>

#include "engine/identity/chunked.h"

using yilian::identity::chunked_vector;

TEST_CASE("a chunked vector grows by chunks and never moves what it holds", "[unit]") {
  chunked_vector<std::string, 4> v;  // chunks of 16
  CHECK(v.empty());
  v.emplace_back("first");
  const std::string* first = &v[0];
  for (int i = 1; i < 1000; ++i) v.push_back(std::to_string(i));
  CHECK(v.size() == 1000);
  CHECK(v.capacity() == 1008);  // 63 chunks of 16
  CHECK(&v[0] == first);        // growth allocated chunks; nothing was copied
  CHECK(*first == "first");
  CHECK(v[999] == "999");
  CHECK(v.back() == "999");
  std::size_t n = 0;
  for (const std::string& s : v) n += s.empty() ? 0U : 1U;
  CHECK(n == 1000);
}
