#include "okta_sidecar/metrics/registry.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace okta_sidecar::metrics {
namespace {

TEST(MetricsCounter, RendersHelpTypeAndValueWithoutLabels) {
  registry r;
  auto& c = r.add_counter("okta_sidecar_requests_total", "Requests proxied.");
  c.with({}).inc();
  c.with({}).inc(2.5);
  EXPECT_EQ(r.render(),
            "# HELP okta_sidecar_requests_total Requests proxied.\n"
            "# TYPE okta_sidecar_requests_total counter\n"
            "okta_sidecar_requests_total 3.5\n");
}

TEST(MetricsCounter, UnlabelledFamilyRendersZeroBeforeFirstUse) {
  registry r;
  r.add_counter("okta_sidecar_x_total", "x");
  EXPECT_EQ(r.render(),
            "# HELP okta_sidecar_x_total x\n# TYPE okta_sidecar_x_total counter\n"
            "okta_sidecar_x_total 0\n");
}

TEST(MetricsCounter, IgnoresNegativeAndNanIncrements) {
  registry r;
  auto& c = r.add_counter("c_total", "h").with({});
  c.inc(4);
  c.inc(-1);
  c.inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(c.value(), 4);
}

TEST(MetricsCounter, LabelledSeriesRenderSortedByLabelValues) {
  registry r;
  auto& f = r.add_counter("okta_sidecar_requests_total", "Requests.", {"host", "status"});
  f.with({"b.okta.com", "200"}).inc();
  f.with({"a.okta.com", "429"}).inc(3);
  f.with({"a.okta.com", "200"}).inc(7);
  EXPECT_EQ(r.render(),
            "# HELP okta_sidecar_requests_total Requests.\n"
            "# TYPE okta_sidecar_requests_total counter\n"
            "okta_sidecar_requests_total{host=\"a.okta.com\",status=\"200\"} 7\n"
            "okta_sidecar_requests_total{host=\"a.okta.com\",status=\"429\"} 3\n"
            "okta_sidecar_requests_total{host=\"b.okta.com\",status=\"200\"} 1\n");
}

TEST(MetricsFamily, WithReturnsTheSameStableReference) {
  registry r;
  auto& f = r.add_counter("c_total", "h", {"k"});
  counter& first = f.with({"a"});
  for (int i = 0; i < 1000; ++i) f.with({std::to_string(i)});  // rebalance the map a lot
  EXPECT_EQ(&first, &f.with({"a"}));
  const std::vector<std::string> owned{"a"};
  EXPECT_EQ(&first, &f.with(owned));
}

TEST(MetricsFamily, WrongLabelCountThrows) {
  registry r;
  auto& f = r.add_counter("c_total", "h", {"a", "b"});
  EXPECT_THROW(f.with({"x"}), std::invalid_argument);
  EXPECT_THROW(f.with({"x", "y", "z"}), std::invalid_argument);
  EXPECT_NO_THROW(f.with({"x", "y"}));
}

TEST(MetricsFamily, CardinalityIsCappedIntoOneOverflowSeries) {
  registry r;
  auto& f = r.add_counter("c_total", "h", {"host"});
  f.set_max_series(3);
  f.with({"a"}).inc();
  f.with({"b"}).inc();
  f.with({"c"}).inc();
  EXPECT_EQ(f.size(), 3u);
  f.with({"d"}).inc();
  f.with({"e"}).inc(2);
  EXPECT_EQ(f.size(), 4u);                    // a, b, c + the overflow series
  EXPECT_EQ(&f.with({"d"}), &f.with({"e"}));  // both folded into it
  f.with({"a"}).inc();                        // existing series still resolve to themselves
  const std::string text = r.render();
  EXPECT_NE(text.find("c_total{host=\"__overflow__\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("c_total{host=\"a\"} 2\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("host=\"d\""), std::string::npos) << text;
}

TEST(MetricsFamily, DistinctLabelSetsAreDistinctSeries) {
  registry r;
  auto& f = r.add_gauge("g", "h", {"a", "b"});
  // ("x","yz") and ("xy","z") must not collide however keys are compared.
  f.with({"x", "yz"}).set(1);
  f.with({"xy", "z"}).set(2);
  f.with({"", "xyz"}).set(3);
  EXPECT_EQ(f.size(), 3u);
  EXPECT_EQ(f.with({"x", "yz"}).value(), 1);
  EXPECT_EQ(f.with({"xy", "z"}).value(), 2);
}

TEST(MetricsGauge, SetAddSubAndRender) {
  registry r;
  auto& g = r.add_gauge("okta_sidecar_queue_depth", "Requests waiting.", {"host"});
  g.with({"a"}).set(5);
  g.with({"a"}).add(2);
  g.with({"a"}).sub(10);
  EXPECT_EQ(g.with({"a"}).value(), -3);
  EXPECT_EQ(r.render(),
            "# HELP okta_sidecar_queue_depth Requests waiting.\n"
            "# TYPE okta_sidecar_queue_depth gauge\n"
            "okta_sidecar_queue_depth{host=\"a\"} -3\n");
}

TEST(MetricsEscaping, LabelValuesEscapeBackslashQuoteAndNewline) {
  registry r;
  auto& g = r.add_gauge("g", "h", {"path"});
  g.with({"a\\b\"c\nd"}).set(1);
  EXPECT_EQ(r.render(), "# HELP g h\n# TYPE g gauge\ng{path=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(MetricsEscaping, HelpEscapesBackslashAndNewlineButNotQuote) {
  registry r;
  r.add_gauge("g", "say \"hi\"\\\nbye");
  EXPECT_EQ(r.render(), "# HELP g say \"hi\"\\\\\\nbye\n# TYPE g gauge\ng 0\n");
}

struct value_case {
  double in;
  const char* text;
};
class MetricsFormatValue : public ::testing::TestWithParam<value_case> {};
TEST_P(MetricsFormatValue, Formats) { EXPECT_EQ(format_value(GetParam().in), GetParam().text); }
INSTANTIATE_TEST_SUITE_P(Table, MetricsFormatValue,
                         ::testing::Values(value_case{0, "0"}, value_case{-0.0, "0"}, value_case{1, "1"},
                                           value_case{1000000, "1000000"}, value_case{-42, "-42"},
                                           value_case{0.25, "0.25"}, value_case{0.0005, "0.0005"},
                                           value_case{1234.5, "1234.5"}, value_case{0.1, "0.1"},
                                           value_case{1e300, "1e+300"},
                                           value_case{std::numeric_limits<double>::infinity(), "+Inf"},
                                           value_case{-std::numeric_limits<double>::infinity(), "-Inf"},
                                           value_case{std::numeric_limits<double>::quiet_NaN(), "NaN"}));

TEST(MetricsHistogram, RendersCumulativeBucketsSumAndCount) {
  registry r;
  auto& h = r.add_histogram("okta_sidecar_wait_seconds", "Queue wait.", {0.1, 1, 5}, {"bucket"});
  auto& s = h.with({"authn"});
  s.observe(0.05);
  s.observe(0.5);
  s.observe(0.5);
  s.observe(7);
  EXPECT_EQ(r.render(),
            "# HELP okta_sidecar_wait_seconds Queue wait.\n"
            "# TYPE okta_sidecar_wait_seconds histogram\n"
            "okta_sidecar_wait_seconds_bucket{bucket=\"authn\",le=\"0.1\"} 1\n"
            "okta_sidecar_wait_seconds_bucket{bucket=\"authn\",le=\"1\"} 3\n"
            "okta_sidecar_wait_seconds_bucket{bucket=\"authn\",le=\"5\"} 3\n"
            "okta_sidecar_wait_seconds_bucket{bucket=\"authn\",le=\"+Inf\"} 4\n"
            "okta_sidecar_wait_seconds_sum{bucket=\"authn\"} 8.05\n"
            "okta_sidecar_wait_seconds_count{bucket=\"authn\"} 4\n");
}

TEST(MetricsHistogram, UnlabelledRendersOnlyLe) {
  registry r;
  r.add_histogram("h_seconds", "h", {1});
  EXPECT_EQ(r.render(),
            "# HELP h_seconds h\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"1\"} 0\nh_seconds_bucket{le=\"+Inf\"} 0\n"
            "h_seconds_sum 0\nh_seconds_count 0\n");
}

// Which bucket index (0..3, 3 = +Inf) a single observation lands in, for bounds {1, 2, 3}.
struct boundary_case {
  double v;
  std::size_t first_bucket;
};
class MetricsHistogramBoundary : public ::testing::TestWithParam<boundary_case> {};
TEST_P(MetricsHistogramBoundary, LeIsInclusive) {
  registry r;
  auto& h = r.add_histogram("h", "h", {1, 2, 3}).with({});
  h.observe(GetParam().v);
  const auto snap = h.read();
  ASSERT_EQ(snap.cumulative.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(snap.cumulative[i], i >= GetParam().first_bucket ? 1u : 0u) << "bucket " << i;
  }
  EXPECT_EQ(snap.count, 1u);
}
INSTANTIATE_TEST_SUITE_P(Table, MetricsHistogramBoundary,
                         ::testing::Values(boundary_case{-5, 0}, boundary_case{0, 0}, boundary_case{1, 0},
                                           boundary_case{std::nextafter(1.0, 2.0), 1}, boundary_case{2, 1},
                                           boundary_case{2.5, 2}, boundary_case{3, 2},
                                           boundary_case{std::nextafter(3.0, 4.0), 3}, boundary_case{1e9, 3},
                                           boundary_case{std::numeric_limits<double>::infinity(), 3},
                                           boundary_case{std::numeric_limits<double>::quiet_NaN(), 3}));

TEST(MetricsHistogram, TrailingInfBoundIsImplicitAndAccepted) {
  registry r;
  auto& h = r.add_histogram("h", "h", {1, std::numeric_limits<double>::infinity()}).with({});
  EXPECT_EQ(h.bounds().size(), 1u);
}

TEST(MetricsHistogram, InvalidBoundsThrow) {
  registry r;
  EXPECT_THROW(r.add_histogram("a", "h", {1, 1}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("b", "h", {2, 1}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("c", "h", {std::numeric_limits<double>::quiet_NaN()}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("d", "h", {-std::numeric_limits<double>::infinity(), 1}),
               std::invalid_argument);
}

TEST(MetricsHistogram, DefaultLatencyBoundsAreSortedAndSpanHalfMsToAMinute) {
  const auto b = latency_bounds_seconds();
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(b.front(), 0.0005);
  EXPECT_EQ(b.back(), 60);
  for (std::size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
  registry r;
  EXPECT_NO_THROW(r.add_histogram("lat_seconds", "h", b));
}

TEST(MetricsRegistry, RejectsInvalidAndDuplicateNames) {
  registry r;
  r.add_counter("okta_sidecar_a_total", "h");
  EXPECT_THROW(r.add_gauge("okta_sidecar_a_total", "h"), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("9lives", "h"), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("has-dash", "h"), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("", "h"), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("ok", "h", {"bad-label"}), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("ok2", "h", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.add_gauge("ok3", "h", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("ok4", "h", {1}, {"le"}), std::invalid_argument);
  r.add_histogram("lat", "h", {1});
  EXPECT_THROW(r.add_counter("lat_count", "h"), std::invalid_argument);
  EXPECT_THROW(r.add_histogram("lat", "h", {1}), std::invalid_argument);
  EXPECT_NO_THROW(r.add_gauge("ns:sub_metric", "h", {"_x", "a1"}));
}

TEST(MetricsRegistry, CallbackGaugeRendersCollectedSamplesAtScrapeTime) {
  registry r;
  double depth = 1;
  r.add_callback_gauge("okta_sidecar_bucket_remaining", "Remaining.", {"host", "bucket"}, [&] {
    return std::vector<registry::sample>{
        {{"a.okta.com", "authn"}, depth}, {{"wrong arity"}, 99}, {{"b.okta.com", "users"}, 600}};
  });
  depth = 17;
  EXPECT_EQ(r.render(),
            "# HELP okta_sidecar_bucket_remaining Remaining.\n"
            "# TYPE okta_sidecar_bucket_remaining gauge\n"
            "okta_sidecar_bucket_remaining{host=\"a.okta.com\",bucket=\"authn\"} 17\n"
            "okta_sidecar_bucket_remaining{host=\"b.okta.com\",bucket=\"users\"} 600\n");
}

TEST(MetricsRegistry, CallbackRunsWithoutRegistryLockAndThrowingCallbackIsContained) {
  registry r;
  r.add_callback_counter("cb_total", "h", {}, [&] {
    // Would deadlock if render held the registry lock while collecting.
    r.add_gauge("added_from_callback", "h");
    return std::vector<registry::sample>{{{}, 2}};
  });
  r.add_callback_gauge("broken", "h", {},
                       []() -> std::vector<registry::sample> { throw std::runtime_error("boom"); });
  std::string text;
  ASSERT_NO_THROW(text = r.render());
  EXPECT_NE(text.find("# TYPE cb_total counter\ncb_total 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE broken gauge\n"), std::string::npos) << text;
}

TEST(MetricsRegistry, FamiliesRenderInRegistrationOrder) {
  registry r;
  r.add_gauge("zeta", "z");
  r.add_counter("alpha_total", "a");
  const std::string text = r.render();
  EXPECT_LT(text.find("zeta"), text.find("alpha_total"));
}

TEST(MetricsThreads, ConcurrentIncrementsAndLookupsLoseNothing) {
  registry r;
  auto& c = r.add_counter("c_total", "h", {"k"});
  auto& g = r.add_gauge("g", "h");
  auto& h = r.add_histogram("h", "h", {0.5}, {"k"});
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const std::string own = "t" + std::to_string(t);
      for (int i = 0; i < per_thread; ++i) {
        c.with({"shared"}).inc();
        c.with({own}).inc();
        g.with({}).add(1);
        h.with({"shared"}).observe(i % 2 ? 1.0 : 0.25);
        if (i % 1000 == 0) (void)r.render();  // scrapes race with updates
      }
    });
  }
  for (auto& th : pool) th.join();
  EXPECT_EQ(c.with({"shared"}).value(), threads * per_thread);
  for (int t = 0; t < threads; ++t) EXPECT_EQ(c.with({"t" + std::to_string(t)}).value(), per_thread);
  EXPECT_EQ(g.with({}).value(), threads * per_thread);
  const auto snap = h.with({"shared"}).read();
  EXPECT_EQ(snap.count, static_cast<std::uint64_t>(threads * per_thread));
  EXPECT_EQ(snap.cumulative[0], static_cast<std::uint64_t>(threads * per_thread / 2));
  EXPECT_DOUBLE_EQ(snap.sum, threads * per_thread / 2 * 1.25);
}

}  // namespace
}  // namespace okta_sidecar::metrics
