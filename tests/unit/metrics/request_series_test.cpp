// Per-(host, bucket) series resolved once: the same counters family::with would give, created
// only when used, behind caches that stay bounded and never leave a handle dangling.
#include "okta_sidecar/metrics/request_series.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace okta_sidecar::metrics {
namespace {

// The families as proxy_metrics declares them, with the same label mapping.
struct fixture {
  registry reg;
  label_bounds bounds{{"acme.okta.com"}, {"users", "oauth2-token"}, 2};
  family<counter>& requests = reg.add_counter("requests_total", "h", {"host", "bucket", "status"});
  family<counter>& responses = reg.add_counter("responses_total", "h", {"host", "bucket", "status"});
  family<counter>& up429 = reg.add_counter("up429_total", "h", {"host", "bucket"});
  family<counter>& absorbed = reg.add_counter("absorbed_total", "h", {"host", "bucket"});
  family<counter>& admissions = reg.add_counter("admissions_total", "h", {"host", "bucket", "result"});
  family<histogram>& wait = reg.add_histogram("wait_seconds", "h", {0.1, 1}, {"host", "bucket"});
  family<histogram>& latency = reg.add_histogram("latency_seconds", "h", {0.1, 1}, {"host"});
  family<counter>& rejections = reg.add_counter("rejections_total", "h", {"host"});
  request_series series{
      request_families{requests, responses, up429, absorbed, admissions, wait, latency, rejections}};

  void bind() {
    auto host_bucket = [this](std::vector<std::string>& v) {
      auto [h, b] = bounds.host_bucket(v[0], v[1]);
      v[0] = std::move(h);
      v[1] = std::move(b);
    };
    auto host_only = [this](std::vector<std::string>& v) { v[0] = bounds.host(v[0]); };
    for (auto* f : {&requests, &responses, &up429, &absorbed, &admissions}) f->set_label_mapper(host_bucket);
    wait.set_label_mapper(host_bucket);
    latency.set_label_mapper(host_only);
    rejections.set_label_mapper(host_only);
    series.bound_labels(bounds);
  }
};

TEST(RequestSeries, SameNamesGiveTheSameSeriesAsFamilyWith) {
  fixture f;
  auto& s = f.series.of("acme.okta.com", "users");
  EXPECT_EQ(&s, &f.series.of("acme.okta.com", "users"));
  s.requests(200).inc();
  s.requests(200).inc();
  s.requests(429).inc();
  s.admitted().inc();
  s.queue_wait().observe(0.05);
  s.upstream_latency().observe(0.5);
  EXPECT_EQ(&s.requests(200), &f.requests.with({"acme.okta.com", "users", "200"}));
  EXPECT_EQ(f.requests.with({"acme.okta.com", "users", "200"}).value(), 2);
  EXPECT_EQ(f.requests.with({"acme.okta.com", "users", "429"}).value(), 1);
  EXPECT_EQ(&s.admitted(), &f.admissions.with({"acme.okta.com", "users", "admitted"}));
  EXPECT_EQ(f.wait.with({"acme.okta.com", "users"}).read().count, 1u);
  EXPECT_EQ(f.latency.with({"acme.okta.com"}).read().count, 1u);
}

TEST(RequestSeries, SeriesAppearOnlyWhenUsed) {
  fixture f;
  auto& s = f.series.of("acme.okta.com", "users");
  EXPECT_EQ(f.admissions.size(), 0u);
  EXPECT_EQ(f.requests.size(), 0u);
  EXPECT_EQ(f.wait.size(), 0u);
  s.rejected().inc();
  EXPECT_EQ(f.admissions.size(), 1u) << "admitted and cancelled stay absent from the scrape";
  EXPECT_EQ(f.requests.size(), 0u);
}

TEST(RequestSeries, StatusesBeyondTheSlotsStillCountRight) {
  fixture f;
  auto& s = f.series.of("a", "b");
  const int n = static_cast<int>(bucket_series::status_slots) + 8;
  for (int round = 0; round < 3; ++round) {
    for (int st = 200; st < 200 + n; ++st) s.upstream_responses(st).inc();
  }
  EXPECT_EQ(f.responses.size(), static_cast<std::size_t>(n));
  for (int st = 200; st < 200 + n; ++st) {
    EXPECT_EQ(f.responses.with({"a", "b", std::to_string(st)}).value(), 3) << st;
  }
  EXPECT_EQ(&s.upstream_responses(200), &f.responses.with({"a", "b", "200"}));
  EXPECT_EQ(&s.upstream_responses(200 + n - 1), &f.responses.with({"a", "b", std::to_string(200 + n - 1)}));
}

TEST(RequestSeries, NamesGoThroughLabelBounds) {
  fixture f;
  f.bind();
  auto& evil = f.series.of("evil.okta.com", "users");
  auto& other = f.series.of("other.okta.com", "users");
  EXPECT_EQ(&evil, &other) << "hosts outside the configured names share the 'other' series";
  EXPECT_EQ(evil.host_label(), "other");
  evil.requests(200).inc();
  EXPECT_EQ(f.requests.with({"other", "users", "200"}).value(), 1);
  // Ids beyond the cap share "<group>:other", as label_bounds decides.
  f.series.of("acme.okta.com", "authz:1");
  f.series.of("acme.okta.com", "authz:2");
  auto& third = f.series.of("acme.okta.com", "authz:3");
  EXPECT_EQ(third.bucket_label(), "authz:other");
  third.admitted().inc();
  EXPECT_EQ(f.admissions.with({"acme.okta.com", "authz:other", "admitted"}).value(), 1);
  EXPECT_EQ(f.admissions.size(), 1u) << "the family mapper leaves resolved labels as they are";
}

TEST(RequestSeries, ClientChosenNamesStayBoundedAndHandlesStayValid) {
  fixture f;
  f.bind();
  auto& first = f.series.of("h0.okta.com", "users");
  const std::size_t names = request_series::max_cached_names * 2 + 3;
  for (std::size_t i = 1; i < names; ++i) {
    f.series.of("h" + std::to_string(i) + ".okta.com", "users").requests(200).inc();
    ASSERT_LE(f.series.cached_names(), request_series::max_cached_names);
  }
  EXPECT_EQ(f.series.label_pairs(), 1u) << "every name maps to (other, users)";
  first.requests(200).inc();  // the handle taken before the name cache started over
  EXPECT_EQ(f.requests.with({"other", "users", "200"}).value(), static_cast<double>(names));
  EXPECT_EQ(&first, &f.series.of("h0.okta.com", "users"));
}

TEST(RequestSeries, WithoutBoundsLabelPairsAreCappedToOneOverflowSeries) {
  fixture f;
  for (std::size_t i = 0; i < request_series::max_label_pairs + 5; ++i) {
    f.series.of("h" + std::to_string(i), "b");
  }
  EXPECT_EQ(f.series.label_pairs(), request_series::max_label_pairs + 1);
  EXPECT_EQ(f.series.of("h-late", "b").host_label(), overflow_label_value);
}

TEST(RequestSeries, AReloadThatNamesAHostRelabelsItAndOldHandlesStayValid) {
  fixture f;
  f.bind();
  auto& before = f.series.of("beta.okta.com", "users");
  EXPECT_EQ(before.host_label(), "other");
  f.bounds.update({"beta.okta.com"}, {});
  auto& after = f.series.of("beta.okta.com", "users");
  EXPECT_EQ(after.host_label(), "beta.okta.com");
  EXPECT_NE(&before, &after);
  before.requests(200).inc();  // a request that began before the reload
  after.requests(200).inc();
  EXPECT_EQ(f.requests.with({"other", "users", "200"}).value(), 1);
  EXPECT_EQ(f.requests.with({"beta.okta.com", "users", "200"}).value(), 1);
}

TEST(RequestSeries, ConcurrentThreadsCountEveryUpdate) {
  fixture f;
  f.bind();
  constexpr int threads = 4, per_thread = 5000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&f, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto& s = f.series.of(i % 2 ? "acme.okta.com" : "x" + std::to_string(t) + ".okta.com", "users");
        s.requests(200 + i % 20).inc();
        s.admitted().inc();
      }
    });
  }
  for (auto& th : pool) th.join();
  double total = 0;
  for (int st = 200; st < 220; ++st) {
    total += f.requests.with({"acme.okta.com", "users", std::to_string(st)}).value();
    total += f.requests.with({"other", "users", std::to_string(st)}).value();
  }
  EXPECT_EQ(total, threads * per_thread);
  EXPECT_EQ(f.admissions.with({"acme.okta.com", "users", "admitted"}).value() +
                f.admissions.with({"other", "users", "admitted"}).value(),
            threads * per_thread);
}

}  // namespace
}  // namespace okta_sidecar::metrics
