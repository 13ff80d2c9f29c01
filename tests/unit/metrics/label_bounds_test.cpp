// Issue 14: metric labels come from bounded sets, whatever hosts and ids clients send.
#include "okta_sidecar/metrics/label_bounds.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "okta_sidecar/metrics/registry.hpp"

namespace okta_sidecar::metrics {
namespace {

label_bounds make(std::size_t ids = 2) {
  return label_bounds({"acme.okta.com"}, {"users", "oauth2-token:org", "oauth2-token"}, ids);
}

TEST(LabelBounds, HostsAreConfiguredExactNamesOrOther) {
  auto b = make();
  EXPECT_EQ(b.host("acme.okta.com"), "acme.okta.com");
  EXPECT_EQ(b.host("evil.okta.com"), "other");
  EXPECT_EQ(b.host("refused.example"), "other");
  b.update({"beta.okta.com"}, {});
  EXPECT_EQ(b.host("beta.okta.com"), "beta.okta.com");
  EXPECT_EQ(b.host("acme.okta.com"), "acme.okta.com") << "a label once valid stays valid";
}

TEST(LabelBounds, TableNamesPassIdsAreCappedPerHostLabelAndGroup) {
  auto b = make(2);
  EXPECT_EQ(b.bucket("acme.okta.com", "users"), "users");
  EXPECT_EQ(b.bucket("acme.okta.com", "oauth2-token:org"), "oauth2-token:org");
  EXPECT_EQ(b.bucket("acme.okta.com", "oauth2-token:a"), "oauth2-token:a");
  EXPECT_EQ(b.bucket("acme.okta.com", "oauth2-token:b"), "oauth2-token:b");
  EXPECT_EQ(b.bucket("acme.okta.com", "oauth2-token:c"), "oauth2-token:other");
  EXPECT_EQ(b.bucket("acme.okta.com", "oauth2-token:a"), "oauth2-token:a") << "sticky";
  EXPECT_EQ(b.bucket("other", "oauth2-token:c"), "oauth2-token:c") << "own cap per host label";
  EXPECT_EQ(b.bucket("acme.okta.com", "oauth2-token:other"), "oauth2-token:other");
  EXPECT_EQ(b.bucket("acme.okta.com", "tunnel"), "tunnel");
  // A name without ':' that the table does not know is treated as an id too.
  EXPECT_EQ(b.bucket("acme.okta.com", "x1"), "x1");
  EXPECT_EQ(b.bucket("acme.okta.com", "x2"), "x2");
  EXPECT_EQ(b.bucket("acme.okta.com", "x3"), "other");
}

TEST(LabelBounds, FamilyMapperBoundsTheSeriesOfTensOfThousandsOfNames) {
  registry r;
  auto& requests = r.add_counter("t_requests_total", "h", {"host", "bucket", "status"});
  auto b = make(64);
  requests.set_label_mapper([&b](std::vector<std::string>& v) {
    auto [h, n] = b.host_bucket(v[0], v[1]);
    v[0] = h;
    v[1] = n;
  });
  for (int i = 0; i < 20000; ++i) {
    requests.with({"acme.okta.com", "oauth2-token:id" + std::to_string(i), "200"}).inc();
    requests.with({"refused" + std::to_string(i) + ".example", "-", "403"}).inc();
  }
  EXPECT_EQ(requests.size(), 64u + 1u + 1u);  // 64 ids, acme's overflow, other/- 403
  EXPECT_LT(r.render().size(), 20000u);
}

}  // namespace
}  // namespace okta_sidecar::metrics
