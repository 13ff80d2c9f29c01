#pragma once
// Process metrics rendered in the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Pure: no I/O, no clock.
//
// Hot path: counter/gauge/histogram updates are lock-free atomics. `family::with` takes a
// mutex and a map lookup (no allocation when the series exists), so callers look a series up
// once and keep the reference: children are never moved or freed while the registry lives.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace okta_sidecar::metrics {

// A monotonically increasing value. Negative or NaN increments are ignored: a counter that
// goes down breaks every rate() computed from it.
class counter {
 public:
  void inc(double v = 1);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
  void sub(double v) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into fixed buckets. Bounds are upper-inclusive (`le`), as Prometheus
// defines them; an implicit +Inf bucket catches the rest (and NaN).
class histogram {
 public:
  // `bounds` must be finite and strictly increasing (the registry validates them).
  explicit histogram(std::shared_ptr<const std::vector<double>> bounds);
  void observe(double v);

  struct snapshot {
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    std::uint64_t count = 0;  // == cumulative.back()
  };
  snapshot read() const;
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_->size() + 1, not cumulative
  std::atomic<double> sum_{0};
};

enum class metric_type { counter, gauge, histogram };

// What every family shares; the registry renders through this interface.
class family_base {
 public:
  family_base(std::string name, std::string help, std::vector<std::string> labels)
      : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)) {}
  virtual ~family_base() = default;
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return labels_; }
  virtual metric_type type() const = 0;
  // Appends this family's HELP, TYPE and samples.
  virtual void render(std::string& out) const = 0;

 protected:
  std::string name_;
  std::string help_;
  std::vector<std::string> labels_;
};

namespace detail {
// Orders label-value vectors and lets a lookup use string_views without building a key.
struct labels_less {
  using is_transparent = void;
  bool operator()(const std::vector<std::string>& a, const std::vector<std::string>& b) const {
    return a < b;
  }
  bool operator()(const std::vector<std::string>& a, std::span<const std::string_view> b) const;
  bool operator()(std::span<const std::string_view> a, const std::vector<std::string>& b) const;
};
}  // namespace detail

// Value used for every label once a family holds max_series series, so a label fed from
// outside (a host name under a wildcard) cannot grow memory without bound.
inline constexpr std::string_view overflow_label_value = "__overflow__";
inline constexpr std::size_t default_max_series = 10000;

// All series of one metric name, keyed by label values in label-name order.
template <class T>
class family final : public family_base {
 public:
  family(std::string name, std::string help, std::vector<std::string> labels,
         std::shared_ptr<const std::vector<double>> bounds = nullptr);

  // The series for these label values (created at 0 on first use). A wrong number of values
  // is a programming error and throws std::invalid_argument; callers do this once and cache.
  T& with(std::initializer_list<std::string_view> label_values);
  T& with(std::span<const std::string_view> label_values);
  T& with(const std::vector<std::string>& label_values);

  std::size_t size() const;
  void set_max_series(std::size_t n);
  // Rewrites label values before the lookup (bounded label sets, issue 14). Set it at start-up,
  // before the family is used from more than one thread.
  using label_mapper = std::function<void(std::vector<std::string>& values)>;
  void set_label_mapper(label_mapper m);

  metric_type type() const override;
  void render(std::string& out) const override;

 private:
  std::unique_ptr<T> make_child() const;
  T& lookup(std::span<const std::string_view> label_values);

  std::shared_ptr<const std::vector<double>> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>, detail::labels_less> children_;
  std::size_t max_series_ = default_max_series;
  label_mapper mapper_;
};

extern template class family<counter>;
extern template class family<gauge>;
extern template class family<histogram>;

// The set of families a process exposes on /metrics.
class registry {
 public:
  registry();
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  // Registration happens at start-up: an invalid or duplicate name throws
  // std::invalid_argument naming it.
  family<counter>& add_counter(std::string name, std::string help, std::vector<std::string> labels = {});
  family<gauge>& add_gauge(std::string name, std::string help, std::vector<std::string> labels = {});
  family<histogram>& add_histogram(std::string name, std::string help, std::vector<double> bounds,
                                   std::vector<std::string> labels = {});

  // Figures computed at scrape time (queue depth, bucket remaining, breaker state...): the
  // callback returns samples and is called under no registry lock, so it may take its own.
  // Samples with the wrong number of label values are dropped; a callback that throws
  // renders no samples.
  using sample = std::pair<std::vector<std::string> /*label values*/, double>;
  using collector = std::function<std::vector<sample>()>;
  void add_callback_gauge(std::string name, std::string help, std::vector<std::string> labels,
                          collector collect);
  // Same, for totals kept elsewhere (e.g. a pool's connect count).
  void add_callback_counter(std::string name, std::string help, std::vector<std::string> labels,
                            collector collect);

  std::string render() const;  // text format 0.0.4

  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct callback_family;
  void check_new_name(const std::string& name, const std::vector<std::string>& labels, metric_type type);
  template <class F>
  F& insert(std::unique_ptr<F> f);

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<family_base>> families_;  // registration order
};

// Upper bounds for latencies in seconds, 0.5 ms .. 60 s: fine around Okta's typical
// 20-300 ms and wide enough for queue waits up to the default max_wait_ms.
std::vector<double> latency_bounds_seconds();

// Text-format helpers, exposed for the tests and for callers that render by hand.
std::string format_value(double v);                  // 1, 0.25, +Inf, -Inf, NaN
std::string escape_label_value(std::string_view v);  // \\  \"  \n
std::string escape_help(std::string_view v);         // \\  \n

}  // namespace okta_sidecar::metrics
