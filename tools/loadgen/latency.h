// What the load generators share: latency samples and their percentiles.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace yilian::loadgen {

// The p-quantile (0..1) of `v` (reorders it); 0 for no samples.
inline double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// {"p50":..,"p90":..,"p99":..,"p999":..,"max":..} in milliseconds.
inline std::string latency_json(std::vector<double>& ms) {
  char buf[256];
  const double p50 = percentile(ms, 0.50), p90 = percentile(ms, 0.90), p99 = percentile(ms, 0.99),
               p999 = percentile(ms, 0.999);
  std::snprintf(buf, sizeof buf, "{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f}", p50, p90, p99,
                p999, ms.empty() ? 0.0 : *std::max_element(ms.begin(), ms.end()));
  return buf;
}

}  // namespace yilian::loadgen
