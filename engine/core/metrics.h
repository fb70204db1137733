// yilian::metrics — counters, gauges and histograms rendered in the
// Prometheus text exposition format 0.0.4 (what GET /metrics serves).
//
// A metric is a *family* (name, help, label names) whose *children* are keyed
// by label values and created on first use:
//
//   auto& published = reg.add_counter("yilian_bus_published_total",
//                                     "Records durably published.", {"topic"});
//   metrics::counter& c = published.with({"yilian.patient.v1"});  // map lookup, shared lock
//   c.inc();                                                         // one atomic op
//
// Children are never removed, so the reference `with()` returns stays valid for
// the registry's lifetime; hot paths look a child up once and keep the
// reference (updating it is lock-free). Label values must come from a bounded
// set (topics, hospitals, route patterns, status codes) — never ids or paths.
//
// Callback gauges are evaluated at scrape time (consumer lag per group):
//
//   auto reg_handle = reg.add_callback_gauge("yilian_consumer_lag", "...",
//       {"group", "topic", "partition"}, [&] { return compute_lag_samples(); });
//
// The callback is unregistered when the returned handle is destroyed; it runs
// on the thread that renders, with the family's mutex held, so it must not
// block for long nor register metrics.
//
// Thread-safety: every member of registry and family may be called from any
// thread. Registration mistakes (bad names, the same name with another type or
// other labels, wrong number of label values) are bugs and throw
// std::invalid_argument / std::logic_error.
//
// Rendering is deterministic: families sorted by name, children sorted by
// label values, callback samples in the order the callbacks return them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace yilian::metrics {

// A value that only goes up (requests, errors, bytes).
class counter {
 public:
  counter() = default;
  counter(const counter&) = delete;
  counter& operator=(const counter&) = delete;

  // Adds v; a negative or NaN v is ignored (a counter never goes down).
  void inc(double v = 1.0) noexcept;
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (open connections, queue depth).
class gauge {
 public:
  gauge() = default;
  gauge(const gauge&) = delete;
  gauge& operator=(const gauge&) = delete;

  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(double v) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
  void inc(double v = 1.0) noexcept { add(v); }
  void dec(double v = 1.0) noexcept { add(-v); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Distribution of observations in fixed buckets (durations, sizes).
class histogram {
 public:
  // `bounds`: strictly increasing finite upper bounds; +Inf is implicit.
  explicit histogram(std::span<const double> bounds);
  histogram(const histogram&) = delete;
  histogram& operator=(const histogram&) = delete;

  // Counts v in the first bucket whose upper bound is >= v; NaN is ignored.
  void observe(double v) noexcept;

  struct snapshot {
    std::vector<double> bounds;             // without +Inf
    std::vector<std::uint64_t> cumulative;  // bounds.size() + 1 entries, the last is +Inf
    double sum = 0;
    std::uint64_t count = 0;  // == cumulative.back()
  };
  snapshot collect() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // per bucket, not cumulative
  std::atomic<double> sum_{0.0};
};

// Prometheus' default buckets: .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 (seconds).
std::vector<double> default_buckets();
// start, start*factor, ... (count bounds). start > 0, factor > 1, count >= 1.
std::vector<double> exponential_buckets(double start, double factor, std::size_t count);

enum class kind { counter, gauge, histogram, callback_gauge };

// Base of every family; internal to the registry's rendering.
class family_base {
 public:
  family_base(std::string name, std::string help, std::vector<std::string> label_names, kind k);
  virtual ~family_base() = default;
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;

  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }
  kind type() const noexcept { return kind_; }

  // Appends this family's samples (no HELP/TYPE lines); false when it has none.
  virtual bool render_samples(std::string& out) const = 0;

 protected:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  kind kind_;
};

struct label_values_less {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const noexcept {
    auto ai = a.begin();
    auto bi = b.begin();
    for (; ai != a.end() && bi != b.end(); ++ai, ++bi) {
      const std::string_view x{*ai};
      const std::string_view y{*bi};
      if (x < y) return true;
      if (y < x) return false;
    }
    return ai == a.end() && bi != b.end();
  }
};

// A family of counters, gauges or histograms; children by label values.
template <class Metric>
class family final : public family_base {
 public:
  family(std::string name, std::string help, std::vector<std::string> label_names, kind k,
         std::vector<double> bounds = {});

  // The child for these label values (one per label name, in order), created
  // on first use. Throws std::invalid_argument on a wrong number of values.
  Metric& with(std::initializer_list<std::string_view> label_values) {
    return with(std::span<const std::string_view>(label_values.begin(), label_values.size()));
  }
  Metric& with(std::span<const std::string_view> label_values);
  Metric& with(std::span<const std::string> label_values);
  // The only child of a family without labels.
  Metric& get() { return with(std::span<const std::string_view>{}); }

  const std::vector<double>& bounds() const noexcept { return bounds_; }
  bool render_samples(std::string& out) const override;

 private:
  template <class Values>
  Metric& find_or_create(const Values& values);

  std::vector<double> bounds_;  // histograms only
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>, label_values_less> children_;
};

using counter_family = family<counter>;
using gauge_family = family<gauge>;
using histogram_family = family<histogram>;

// One sample a callback gauge reports: label values in label-name order.
struct sample {
  std::vector<std::string> label_values;
  double value = 0;
};

using gauge_callback = std::function<std::vector<sample>()>;

class callback_gauge_family final : public family_base {
 public:
  callback_gauge_family(std::string name, std::string help, std::vector<std::string> label_names,
                        kind k = kind::callback_gauge);
  std::uint64_t add(gauge_callback cb);
  void remove(std::uint64_t id);
  // Samples whose label count is wrong are skipped; a callback that throws
  // contributes no samples.
  bool render_samples(std::string& out) const override;

 private:
  mutable std::mutex mutex_;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, gauge_callback> callbacks_;
};

// Keeps a callback registered; unregisters it when destroyed (waiting for a
// render that is calling it to finish). Move-only.
class callback_handle {
 public:
  callback_handle() = default;
  callback_handle(std::shared_ptr<callback_gauge_family> f, std::uint64_t id) : family_(std::move(f)), id_(id) {}
  callback_handle(callback_handle&& o) noexcept : family_(std::move(o.family_)), id_(o.id_) {}
  callback_handle& operator=(callback_handle&& o) noexcept;
  callback_handle(const callback_handle&) = delete;
  callback_handle& operator=(const callback_handle&) = delete;
  ~callback_handle() { reset(); }
  void reset();

 private:
  std::shared_ptr<callback_gauge_family> family_;
  std::uint64_t id_ = 0;
};

// Owns every family. The app creates one and hands it to components; tests
// create their own. Must outlive every handle and child reference taken from it.
class registry {
 public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Registering an existing name again with the same type, label names (and
  // buckets) returns the existing family; anything else throws std::logic_error.
  // Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
  // without a leading "__" (and not "le" on histograms): else std::invalid_argument.
  counter_family& add_counter(std::string_view name, std::string_view help,
                              std::vector<std::string> label_names = {});
  gauge_family& add_gauge(std::string_view name, std::string_view help,
                          std::vector<std::string> label_names = {});
  histogram_family& add_histogram(std::string_view name, std::string_view help,
                                  std::vector<std::string> label_names = {},
                                  std::vector<double> bounds = default_buckets());
  // Several callbacks may feed one family (one per consumer, say); each handle
  // removes its own.
  [[nodiscard]] callback_handle add_callback_gauge(std::string_view name, std::string_view help,
                                                   std::vector<std::string> label_names, gauge_callback cb);

  // The whole registry in text format 0.0.4. Families without samples (a
  // labelled family no child was created for yet) are left out.
  std::string render() const;

 private:
  template <class F, class... Args>
  std::shared_ptr<F> add(kind k, std::string_view name, std::string_view help, std::vector<std::string> label_names,
         Args&&... args);

  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<family_base>, std::less<>> families_;
};

extern template class family<counter>;
extern template class family<gauge>;
extern template class family<histogram>;

// The content type GET /metrics answers with.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

// Exposition-format helpers (exposed for tests and for other renderers).
std::string format_value(double v);              // 1, 0.25, +Inf, -Inf, NaN, 1e+300
void append_escaped_label_value(std::string& out, std::string_view v);  // \ " newline
void append_escaped_help(std::string& out, std::string_view v);         // \ newline

}  // namespace yilian::metrics
