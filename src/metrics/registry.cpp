#include "okta_sidecar/metrics/registry.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace okta_sidecar::metrics {

namespace {

bool valid_metric_name(std::string_view n) {
  // [a-zA-Z_:][a-zA-Z0-9_:]* (Prometheus data model, "Metric names and labels").
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  // [a-zA-Z_][a-zA-Z0-9_]*; names starting with "__" are reserved for Prometheus itself.
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

std::string_view type_name(metric_type t) {
  switch (t) {
    case metric_type::counter:
      return "counter";
    case metric_type::gauge:
      return "gauge";
    case metric_type::histogram:
      return "histogram";
  }
  return "untyped";
}

void render_header(std::string& out, const family_base& f) {
  out += "# HELP ";
  out += f.name();
  out += ' ';
  out += escape_help(f.help());
  out += "\n# TYPE ";
  out += f.name();
  out += ' ';
  out += type_name(f.type());
  out += '\n';
}

// `name{a="x",b="y"[,le="0.5"]} value`; an empty label set renders as bare `name value`.
void render_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<std::string>& label_names, const std::vector<std::string>& label_values,
                   const std::string* le, double value) {
  out += name;
  out += suffix;
  if (!label_names.empty() || le) {
    out += '{';
    bool first = true;
    for (std::size_t i = 0; i < label_names.size(); ++i) {
      if (!first) out += ',';
      first = false;
      out += label_names[i];
      out += "=\"";
      out += escape_label_value(label_values[i]);
      out += '"';
    }
    if (le) {
      if (!first) out += ',';
      out += "le=\"";
      out += *le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  out += format_value(value);
  out += '\n';
}

}  // namespace

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers print without exponent up to 2^53 so counters read naturally (1000000, not
  // 1e+06); anything else is the shortest text that parses back to the same double.
  constexpr double exact_int_limit = 9007199254740992.0;
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < exact_int_limit) {
    const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(v));
    return std::string(buf, r.ptr);
  }
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  return std::string(buf, r.ptr);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> latency_bounds_seconds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

// ---- counter / histogram ----------------------------------------------------------------

void counter::inc(double v) {
  if (!(v >= 0)) return;  // also rejects NaN
  value_.fetch_add(v, std::memory_order_relaxed);
}

histogram::histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_->size() + 1)) {}

void histogram::observe(double v) {
  // First bound b with v <= b (upper-inclusive). Written as !(v <= b) so NaN falls through to
  // the +Inf bucket instead of the first one.
  const auto& b = *bounds_;
  const auto it = std::partition_point(b.begin(), b.end(), [v](double bound) { return !(v <= bound); });
  buckets_[static_cast<std::size_t>(it - b.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

histogram::snapshot histogram::read() const {
  snapshot s;
  const std::size_t n = bounds_->size() + 1;
  s.cumulative.resize(n);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < n; ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  // _count is derived from the buckets so a concurrent scrape never shows +Inf != _count.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ---- family ------------------------------------------------------------------------------

namespace detail {
bool labels_less::operator()(const std::vector<std::string>& a, std::span<const std::string_view> b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](std::string_view x, std::string_view y) { return x < y; });
}
bool labels_less::operator()(std::span<const std::string_view> a, const std::vector<std::string>& b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](std::string_view x, std::string_view y) { return x < y; });
}
}  // namespace detail

template <class T>
family<T>::family(std::string name, std::string help, std::vector<std::string> labels,
                  std::shared_ptr<const std::vector<double>> bounds)
    : family_base(std::move(name), std::move(help), std::move(labels)), bounds_(std::move(bounds)) {
  // A metric without labels exists from the start, so dashboards see 0 rather than nothing.
  if (labels_.empty()) children_.emplace(std::vector<std::string>{}, make_child());
}

template <class T>
std::unique_ptr<T> family<T>::make_child() const {
  if constexpr (std::is_same_v<T, histogram>) {
    return std::make_unique<histogram>(bounds_);
  } else {
    return std::make_unique<T>();
  }
}

template <class T>
T& family<T>::with(std::initializer_list<std::string_view> label_values) {
  return with(std::span<const std::string_view>(label_values.begin(), label_values.size()));
}

template <class T>
T& family<T>::with(const std::vector<std::string>& label_values) {
  std::vector<std::string_view> views(label_values.begin(), label_values.end());
  return with(std::span<const std::string_view>(views));
}

template <class T>
T& family<T>::with(std::span<const std::string_view> label_values) {
  if (label_values.size() != labels_.size()) {
    throw std::invalid_argument("metric " + name_ + ": expected " + std::to_string(labels_.size()) +
                                " label values, got " + std::to_string(label_values.size()));
  }
  if (mapper_) {
    std::vector<std::string> mapped(label_values.begin(), label_values.end());
    mapper_(mapped);
    if (mapped.size() == labels_.size()) {
      const std::vector<std::string_view> views(mapped.begin(), mapped.end());
      return lookup(views);
    }
  }
  return lookup(label_values);
}

template <class T>
void family<T>::set_label_mapper(label_mapper m) {
  std::lock_guard lock(mu_);
  mapper_ = std::move(m);
}

template <class T>
T& family<T>::lookup(std::span<const std::string_view> label_values) {
  std::lock_guard lock(mu_);
  if (auto it = children_.find(label_values); it != children_.end()) return *it->second;
  std::vector<std::string> key;
  if (children_.size() >= max_series_) {
    key.assign(labels_.size(), std::string(overflow_label_value));
    if (auto it = children_.find(key); it != children_.end()) return *it->second;
  } else {
    key.assign(label_values.begin(), label_values.end());
  }
  auto [it, inserted] = children_.emplace(std::move(key), make_child());
  return *it->second;
}

template <class T>
std::size_t family<T>::size() const {
  std::lock_guard lock(mu_);
  return children_.size();
}

template <class T>
void family<T>::set_max_series(std::size_t n) {
  std::lock_guard lock(mu_);
  max_series_ = n;
}

template <class T>
metric_type family<T>::type() const {
  if constexpr (std::is_same_v<T, counter>) {
    return metric_type::counter;
  } else if constexpr (std::is_same_v<T, gauge>) {
    return metric_type::gauge;
  } else {
    return metric_type::histogram;
  }
}

template <class T>
void family<T>::render(std::string& out) const {
  render_header(out, *this);
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<T, histogram>) {
      const auto snap = child->read();
      const auto& bounds = *bounds_;
      for (std::size_t i = 0; i <= bounds.size(); ++i) {
        const std::string le = i < bounds.size() ? format_value(bounds[i]) : "+Inf";
        render_sample(out, name_, "_bucket", labels_, values, &le, static_cast<double>(snap.cumulative[i]));
      }
      render_sample(out, name_, "_sum", labels_, values, nullptr, snap.sum);
      render_sample(out, name_, "_count", labels_, values, nullptr, static_cast<double>(snap.count));
    } else {
      render_sample(out, name_, "", labels_, values, nullptr, child->value());
    }
  }
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

// ---- registry ----------------------------------------------------------------------------

struct registry::callback_family final : family_base {
  callback_family(std::string name, std::string help, std::vector<std::string> labels, metric_type t,
                  collector c)
      : family_base(std::move(name), std::move(help), std::move(labels)), type_(t), collect_(std::move(c)) {}
  metric_type type() const override { return type_; }
  void render(std::string& out) const override {
    render_header(out, *this);
    std::vector<sample> samples;
    try {
      samples = collect_();
    } catch (...) {
      // A failing collector must not take /metrics down with it; its samples are just absent.
      return;
    }
    for (const auto& [values, v] : samples) {
      if (values.size() != labels_.size()) continue;
      render_sample(out, name_, "", labels_, values, nullptr, v);
    }
  }
  metric_type type_;
  collector collect_;
};

registry::registry() = default;
registry::~registry() = default;

void registry::check_new_name(const std::string& name, const std::vector<std::string>& labels,
                              metric_type type) {
  if (!valid_metric_name(name)) throw std::invalid_argument("invalid metric name '" + name + "'");
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!valid_label_name(labels[i])) {
      throw std::invalid_argument("metric " + name + ": invalid label name '" + labels[i] + "'");
    }
    if (type == metric_type::histogram && labels[i] == "le") {
      throw std::invalid_argument("metric " + name + ": label 'le' is reserved for histogram buckets");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (labels[j] == labels[i]) {
        throw std::invalid_argument("metric " + name + ": duplicate label '" + labels[i] + "'");
      }
    }
  }
  // A histogram owns name_bucket/_sum/_count too; refusing those collisions keeps the
  // exposition parseable.
  auto names_of = [](const family_base& f) {
    std::vector<std::string> v{f.name()};
    if (f.type() == metric_type::histogram) {
      v.push_back(f.name() + "_bucket");
      v.push_back(f.name() + "_sum");
      v.push_back(f.name() + "_count");
    }
    return v;
  };
  std::vector<std::string> mine{name};
  if (type == metric_type::histogram) {
    mine.push_back(name + "_bucket");
    mine.push_back(name + "_sum");
    mine.push_back(name + "_count");
  }
  for (const auto& f : families_) {
    for (const auto& theirs : names_of(*f)) {
      if (std::find(mine.begin(), mine.end(), theirs) != mine.end()) {
        throw std::invalid_argument("metric " + name + " is already registered (as " + f->name() + ")");
      }
    }
  }
}

template <class F>
F& registry::insert(std::unique_ptr<F> f) {
  std::lock_guard lock(mu_);
  check_new_name(f->name(), f->label_names(), f->type());
  F& ref = *f;
  families_.push_back(std::shared_ptr<family_base>(std::move(f)));
  return ref;
}

family<counter>& registry::add_counter(std::string name, std::string help, std::vector<std::string> labels) {
  return insert(std::make_unique<family<counter>>(std::move(name), std::move(help), std::move(labels)));
}

family<gauge>& registry::add_gauge(std::string name, std::string help, std::vector<std::string> labels) {
  return insert(std::make_unique<family<gauge>>(std::move(name), std::move(help), std::move(labels)));
}

family<histogram>& registry::add_histogram(std::string name, std::string help, std::vector<double> bounds,
                                           std::vector<std::string> labels) {
  // A trailing +Inf is implicit in the format; accept it and drop it.
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
      throw std::invalid_argument("metric " + name +
                                  ": bucket bounds must be finite and strictly increasing");
    }
  }
  auto shared = std::make_shared<const std::vector<double>>(std::move(bounds));
  return insert(std::make_unique<family<histogram>>(std::move(name), std::move(help), std::move(labels),
                                                    std::move(shared)));
}

void registry::add_callback_gauge(std::string name, std::string help, std::vector<std::string> labels,
                                  collector collect) {
  insert(std::make_unique<callback_family>(std::move(name), std::move(help), std::move(labels),
                                           metric_type::gauge, std::move(collect)));
}

void registry::add_callback_counter(std::string name, std::string help, std::vector<std::string> labels,
                                    collector collect) {
  insert(std::make_unique<callback_family>(std::move(name), std::move(help), std::move(labels),
                                           metric_type::counter, std::move(collect)));
}

std::string registry::render() const {
  // Snapshot the list, then render without the registry lock: callbacks may take locks of
  // their own (scheduler, breaker) and must never nest inside ours.
  std::vector<std::shared_ptr<family_base>> snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot = families_;
  }
  std::string out;
  out.reserve(snapshot.size() * 256);
  for (const auto& f : snapshot) f->render(out);
  return out;
}

}  // namespace okta_sidecar::metrics
