// Issue 14: the admin port's Host check (DNS rebinding) and loopback-only pages.
#include "okta_sidecar/policy/admin_access.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::policy {
namespace {

TEST(AdminAccess, HostMustBeAnIpLiteralLocalhostOrConfigured) {
  const admin_access_settings s{false, {"sidecar.internal"}};
  for (const char* host : {"127.0.0.1:9901", "127.0.0.1", "[::1]:9901", "10.1.2.3:9901", "localhost:9901",
                           "LOCALHOST", "sidecar.internal:9901", "Sidecar.Internal", ""}) {
    EXPECT_EQ(decide_admin_access("/status", host, true, s), admin_verdict::allow) << host;
  }
  for (const char* host : {"evil.example", "evil.example:9901", "127.0.0.1.nip.io", "localhost.evil.example",
                           "sidecar.internal.evil", "a b", "[::1"}) {
    EXPECT_EQ(decide_admin_access("/status", host, true, s), admin_verdict::bad_host) << host;
    EXPECT_EQ(decide_admin_access("/healthz", host, true, s), admin_verdict::bad_host) << host;
  }
}

TEST(AdminAccess, NonLoopbackPeersGetProbesOnlyUnlessExposed) {
  const admin_access_settings closed{false, {}};
  for (const char* path : {"/healthz", "/readyz", "/metrics", "/ca.crt", "/ca-bundle.pem"}) {
    EXPECT_EQ(decide_admin_access(path, "10.0.0.5:9901", false, closed), admin_verdict::allow) << path;
  }
  for (const char* path : {"/status", "/", "/index.html", "/config", "/anything"}) {
    EXPECT_EQ(decide_admin_access(path, "10.0.0.5:9901", false, closed), admin_verdict::loopback_only)
        << path;
    EXPECT_EQ(decide_admin_access(path, "127.0.0.1:9901", true, closed), admin_verdict::allow) << path;
  }
  const admin_access_settings open{true, {}};
  EXPECT_EQ(decide_admin_access("/status", "10.0.0.5:9901", false, open), admin_verdict::allow);
  EXPECT_EQ(decide_admin_access("/config", "evil.example", false, open), admin_verdict::bad_host);
}

}  // namespace
}  // namespace okta_sidecar::policy
