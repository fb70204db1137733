#include "engine/identity/compare.h"

#include <algorithm>
#include <array>

namespace yilian::identity {
namespace {
constexpr std::size_t max_len = 64;
}

double jaro(std::string_view a, std::string_view b) noexcept {
  a = a.substr(0, std::min(a.size(), max_len));
  b = b.substr(0, std::min(b.size(), max_len));
  if (a.empty() && b.empty()) return 1.0;
  if (a.empty() || b.empty()) return 0.0;
  if (a == b) return 1.0;
  const std::size_t window = std::max(a.size(), b.size()) / 2 > 0 ? std::max(a.size(), b.size()) / 2 - 1 : 0;
  std::array<bool, max_len> a_match{}, b_match{};
  std::size_t matches = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::size_t lo = i > window ? i - window : 0;
    const std::size_t hi = std::min(i + window + 1, b.size());
    for (std::size_t j = lo; j < hi; ++j) {
      if (b_match[j] || a[i] != b[j]) continue;
      a_match[i] = b_match[j] = true;
      ++matches;
      break;
    }
  }
  if (matches == 0) return 0.0;
  std::size_t half_transpositions = 0;
  for (std::size_t i = 0, j = 0; i < a.size(); ++i) {
    if (!a_match[i]) continue;
    while (!b_match[j]) ++j;
    if (a[i] != b[j]) ++half_transpositions;
    ++j;
  }
  const double m = static_cast<double>(matches);
  const double t = static_cast<double>(half_transpositions / 2);
  return (m / static_cast<double>(a.size()) + m / static_cast<double>(b.size()) + (m - t) / m) / 3.0;
}

double jaro_winkler(std::string_view a, std::string_view b) noexcept {
  const double j = jaro(a, b);
  if (j <= 0.7) return j;
  std::size_t prefix = 0;
  while (prefix < 4 && prefix < a.size() && prefix < b.size() && a[prefix] == b[prefix]) ++prefix;
  return j + static_cast<double>(prefix) * 0.1 * (1.0 - j);
}

int edit_distance(std::string_view a, std::string_view b, int limit) noexcept {
  a = a.substr(0, std::min(a.size(), max_len));
  b = b.substr(0, std::min(b.size(), max_len));
  const int la = static_cast<int>(a.size()), lb = static_cast<int>(b.size());
  if (std::abs(la - lb) > limit) return limit + 1;
  // Three rolling rows of the OSA table.
  std::array<int, max_len + 1> prev2{}, prev{}, cur{};
  for (int j = 0; j <= lb; ++j) prev[static_cast<std::size_t>(j)] = j;
  for (int i = 1; i <= la; ++i) {
    cur[0] = i;
    int row_min = cur[0];
    for (int j = 1; j <= lb; ++j) {
      const auto ui = static_cast<std::size_t>(i), uj = static_cast<std::size_t>(j);
      const int cost = a[ui - 1] == b[uj - 1] ? 0 : 1;
      int v = std::min({prev[uj] + 1, cur[uj - 1] + 1, prev[uj - 1] + cost});
      if (i > 1 && j > 1 && a[ui - 1] == b[uj - 2] && a[ui - 2] == b[uj - 1]) v = std::min(v, prev2[uj - 2] + 1);
      cur[uj] = v;
      row_min = std::min(row_min, v);
    }
    if (row_min > limit) return limit + 1;
    prev2 = prev;
    prev = cur;
  }
  const int d = prev[static_cast<std::size_t>(lb)];
  return d > limit ? limit + 1 : d;
}

date_agreement compare_dates(civil_date a, civil_date b) noexcept {
  if (!a.known() || !b.known()) return date_agreement::missing;
  if (a == b) return date_agreement::exact;
  if (a.year == b.year && a.month == b.day && a.day == b.month) return date_agreement::typo;
  // Digit-level typos on the YYYYMMDD rendering.
  std::array<char, 8> x{}, y{};
  auto render = [](civil_date d, std::array<char, 8>& out) {
    std::uint32_t v = d.packed();
    for (std::size_t i = 8; i-- > 0;) {
      out[i] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
  };
  render(a, x);
  render(b, y);
  int diff = 0;
  std::array<std::size_t, 8> where{};
  for (std::size_t i = 0; i < 8; ++i) {
    if (x[i] != y[i]) where[static_cast<std::size_t>(diff++)] = i;
  }
  if (diff == 1) return date_agreement::typo;
  if (diff == 2 && where[1] == where[0] + 1 && x[where[0]] == y[where[1]] && x[where[1]] == y[where[0]]) {
    return date_agreement::typo;
  }
  const int same = (a.year == b.year) + (a.month == b.month) + (a.day == b.day);
  return same >= 2 ? date_agreement::partial : date_agreement::disagree;
}

std::string normalize_phone(std::string_view text) {
  // Cut an extension: "ext", "x", "转" (zhuan, "transfer to") and what follows.
  std::size_t cut = text.size();
  for (std::string_view mark : {std::string_view("ext"), std::string_view("EXT"), std::string_view("\xE8\xBD\xAC"),
                                std::string_view("x"), std::string_view("X")}) {
    cut = std::min(cut, text.find(mark));
  }
  text = text.substr(0, cut);
  const bool plus = text.find('+') != std::string_view::npos;
  std::string d;
  for (char c : text) {
    if (c >= '0' && c <= '9') d.push_back(c);
  }
  bool had_country_code = false;
  if (d.starts_with("0086")) {
    d.erase(0, 4);
    had_country_code = true;
  } else if (d.starts_with("86") && (plus || (d.size() == 13 && d[2] == '1'))) {
    d.erase(0, 2);
    had_country_code = true;
  }
  // A landline written internationally drops its trunk 0; mobiles start with 1.
  if (had_country_code && !d.empty() && d[0] != '0' && !(d[0] == '1' && d.size() == 11)) d.insert(d.begin(), '0');
  if (d.size() < 7) return {};
  return d;
}

}  // namespace yilian::identity
