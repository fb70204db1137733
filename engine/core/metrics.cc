#include "engine/core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <system_error>
#include <typeinfo>

namespace yilian::metrics {

namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

// {a="x",b="y"} plus an optional trailing extra label (le for buckets).
void append_labels(std::string& out, const std::vector<std::string>& names,
                   std::span<const std::string> values, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (!first) out += ',';
    first = false;
    out += names[i];
    out += "=\"";
    append_escaped_label_value(out, values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    append_escaped_label_value(out, extra_value);
    out += '"';
  }
  out += '}';
}

void append_line(std::string& out, std::string_view name, std::string_view suffix,
                 const std::vector<std::string>& names, std::span<const std::string> values, double v,
                 std::string_view extra_name = {}, std::string_view extra_value = {}) {
  out += name;
  out += suffix;
  append_labels(out, names, values, extra_name, extra_value);
  out += ' ';
  out += format_value(v);
  out += '\n';
}

std::string_view type_name(kind k) {
  switch (k) {
    case kind::counter: return "counter";
    case kind::gauge: return "gauge";
    case kind::histogram: return "histogram";
    case kind::callback_gauge: return "gauge";
  }
  return "untyped";
}

void check_bounds(const std::vector<double>& bounds) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) throw std::invalid_argument("histogram bucket bounds must be finite");
    if (i > 0 && !(bounds[i - 1] < bounds[i]))
      throw std::invalid_argument("histogram bucket bounds must be strictly increasing");
  }
}

}  // namespace

// ---- values ---------------------------------------------------------------

void counter::inc(double v) noexcept {
  if (!(v >= 0)) return;  // also rejects NaN
  value_.fetch_add(v, std::memory_order_relaxed);
}

histogram::histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) noexcept {
  if (std::isnan(v)) return;
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);  // first bound >= v
  const auto idx = static_cast<std::size_t>(it - bounds_.begin());
  buckets_[idx].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

histogram::snapshot histogram::collect() const {
  snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  // The count is derived from the buckets so that +Inf == _count in every
  // scrape even while observations race with it.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> default_buckets() { return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}; }

std::vector<double> exponential_buckets(double start, double factor, std::size_t count) {
  if (!(start > 0) || !(factor > 1) || count == 0)
    throw std::invalid_argument("exponential_buckets needs start > 0, factor > 1, count >= 1");
  std::vector<double> out;
  out.reserve(count);
  double v = start;
  for (std::size_t i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

// ---- families -------------------------------------------------------------

family_base::family_base(std::string name, std::string help, std::vector<std::string> label_names, kind k)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)), kind_(k) {}

template <class Metric>
family<Metric>::family(std::string name, std::string help, std::vector<std::string> label_names, kind k,
                       std::vector<double> bounds)
    : family_base(std::move(name), std::move(help), std::move(label_names), k), bounds_(std::move(bounds)) {
  // A family without labels has exactly one child; create it now so that it
  // renders (as 0) from the start, like Prometheus client libraries do.
  if (label_names_.empty()) get();
}

template <class Metric>
Metric& family<Metric>::with(std::span<const std::string_view> label_values) {
  return find_or_create(label_values);
}

template <class Metric>
Metric& family<Metric>::with(std::span<const std::string> label_values) {
  return find_or_create(label_values);
}

template <class Metric>
template <class Values>
Metric& family<Metric>::find_or_create(const Values& values) {
  if (values.size() != label_names_.size()) {
    throw std::invalid_argument("metric " + name_ + " takes " + std::to_string(label_names_.size()) +
                                " label values, got " + std::to_string(values.size()));
  }
  {
    std::shared_lock lock(mutex_);
    if (auto it = children_.find(values); it != children_.end()) return *it->second;
  }
  std::unique_lock lock(mutex_);
  if (auto it = children_.find(values); it != children_.end()) return *it->second;
  std::vector<std::string> key;
  key.reserve(values.size());
  for (const auto& v : values) key.emplace_back(v);
  std::unique_ptr<Metric> child;
  if constexpr (std::is_same_v<Metric, histogram>) {
    child = std::make_unique<histogram>(bounds_);
  } else {
    child = std::make_unique<Metric>();
  }
  auto [it, inserted] = children_.emplace(std::move(key), std::move(child));
  return *it->second;
}

template <class Metric>
bool family<Metric>::render_samples(std::string& out) const {
  std::shared_lock lock(mutex_);
  if (children_.empty()) return false;
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<Metric, histogram>) {
      const auto s = child->collect();
      for (std::size_t i = 0; i < s.bounds.size(); ++i) {
        append_line(out, name_, "_bucket", label_names_, values, static_cast<double>(s.cumulative[i]), "le",
                    format_value(s.bounds[i]));
      }
      append_line(out, name_, "_bucket", label_names_, values, static_cast<double>(s.cumulative.back()), "le",
                  "+Inf");
      append_line(out, name_, "_sum", label_names_, values, s.sum);
      append_line(out, name_, "_count", label_names_, values, static_cast<double>(s.count));
    } else {
      append_line(out, name_, "", label_names_, values, child->value());
    }
  }
  return true;
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

callback_gauge_family::callback_gauge_family(std::string name, std::string help,
                                             std::vector<std::string> label_names, kind)
    : family_base(std::move(name), std::move(help), std::move(label_names), kind::callback_gauge) {}

std::uint64_t callback_gauge_family::add(gauge_callback cb) {
  std::lock_guard lock(mutex_);
  const auto id = next_id_++;
  callbacks_.emplace(id, std::move(cb));
  return id;
}

void callback_gauge_family::remove(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  callbacks_.erase(id);
}

bool callback_gauge_family::render_samples(std::string& out) const {
  // The lock is held while callbacks run so that a handle being destroyed
  // waits for a render that is still calling its callback.
  std::lock_guard lock(mutex_);
  bool any = false;
  for (const auto& [id, cb] : callbacks_) {
    std::vector<sample> samples;
    try {
      samples = cb();
    } catch (...) {
      continue;
    }
    for (const auto& s : samples) {
      if (s.label_values.size() != label_names_.size()) continue;
      append_line(out, name_, "", label_names_, s.label_values, s.value);
      any = true;
    }
  }
  return any;
}

callback_handle& callback_handle::operator=(callback_handle&& o) noexcept {
  if (this != &o) {
    reset();
    family_ = std::move(o.family_);
    id_ = o.id_;
  }
  return *this;
}

void callback_handle::reset() {
  if (family_) {
    family_->remove(id_);
    family_.reset();
  }
}

// ---- registry ---------------------------------------------------------------

template <class F, class... Args>
std::shared_ptr<F> registry::add(kind k, std::string_view name, std::string_view help, std::vector<std::string> label_names,
                 Args&&... args) {
  if (!valid_metric_name(name)) throw std::invalid_argument("invalid metric name: " + std::string(name));
  for (const auto& l : label_names) {
    if (!valid_label_name(l) || (k == kind::histogram && l == "le")) {
      throw std::invalid_argument("invalid label name '" + l + "' for metric " + std::string(name));
    }
  }
  for (std::size_t i = 0; i < label_names.size(); ++i) {
    for (std::size_t j = i + 1; j < label_names.size(); ++j) {
      if (label_names[i] == label_names[j])
        throw std::invalid_argument("duplicate label name '" + label_names[i] + "' for metric " + std::string(name));
    }
  }
  std::lock_guard lock(mutex_);
  if (auto it = families_.find(name); it != families_.end()) {
    auto* existing = dynamic_cast<F*>(it->second.get());
    if (existing == nullptr || existing->type() != k || existing->label_names() != label_names) {
      throw std::logic_error("metric " + std::string(name) + " already registered with another type or labels");
    }
    if constexpr (std::is_same_v<F, histogram_family>) {
      if (existing->bounds() != std::vector<double>(args...))
        throw std::logic_error("histogram " + std::string(name) + " already registered with other buckets");
    }
    return std::static_pointer_cast<F>(it->second);
  }
  auto f = std::make_shared<F>(std::string(name), std::string(help), std::move(label_names), k,
                               std::forward<Args>(args)...);
  families_.emplace(std::string(name), f);
  return f;
}

counter_family& registry::add_counter(std::string_view name, std::string_view help,
                                      std::vector<std::string> label_names) {
  return *add<counter_family>(kind::counter, name, help, std::move(label_names));
}

gauge_family& registry::add_gauge(std::string_view name, std::string_view help, std::vector<std::string> label_names) {
  return *add<gauge_family>(kind::gauge, name, help, std::move(label_names));
}

histogram_family& registry::add_histogram(std::string_view name, std::string_view help,
                                          std::vector<std::string> label_names, std::vector<double> bounds) {
  check_bounds(bounds);
  return *add<histogram_family>(kind::histogram, name, help, std::move(label_names), std::move(bounds));
}

callback_handle registry::add_callback_gauge(std::string_view name, std::string_view help,
                                             std::vector<std::string> label_names, gauge_callback cb) {
  auto fam = add<callback_gauge_family>(kind::callback_gauge, name, help, std::move(label_names));
  const auto id = fam->add(std::move(cb));
  return callback_handle(std::move(fam), id);
}

std::string registry::render() const {
  // Copy the family list so that rendering (and callbacks) run without the
  // registry lock: a callback may be slow, and registration must not wait.
  std::vector<std::shared_ptr<family_base>> families;
  {
    std::lock_guard lock(mutex_);
    families.reserve(families_.size());
    for (const auto& [name, f] : families_) families.push_back(f);
  }
  std::string out;
  out.reserve(families.size() * 128);
  for (const auto& f : families) {
    std::string samples;
    if (!f->render_samples(samples)) continue;
    out += "# HELP ";
    out += f->name();
    out += ' ';
    append_escaped_help(out, f->help());
    out += "\n# TYPE ";
    out += f->name();
    out += ' ';
    out += type_name(f->type());
    out += '\n';
    out += samples;
  }
  return out;
}

// ---- format helpers ----------------------------------------------------------

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integral values (the common case: counts) print without exponent or point.
  if (std::abs(v) < 1e15 && v == std::trunc(v)) {
    return std::to_string(static_cast<long long>(v));
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, r.ptr);
}

void append_escaped_label_value(std::string& out, std::string_view v) {
  for (const char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

void append_escaped_help(std::string& out, std::string_view v) {
  for (const char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
}

}  // namespace yilian::metrics
