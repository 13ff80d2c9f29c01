#include "okta_sidecar/fleet/redis_url.hpp"

#include <gtest/gtest.h>

namespace okta_sidecar::fleet {
namespace {

TEST(RedisUrlTest, ParsesEveryPart) {
  struct row {
    const char* text;
    bool tls;
    const char* host;
    int port;
    int db;
    const char* user;
    const char* password;
  };
  const row rows[] = {
      {"redis://127.0.0.1:6379/0", false, "127.0.0.1", 6379, 0, "", ""},
      {"redis://redis", false, "redis", 6379, 0, "", ""},
      {"redis://redis/3", false, "redis", 6379, 3, "", ""},
      {"rediss://cache.example:6380/1", true, "cache.example", 6380, 1, "", ""},
      {"redis://s3cret@redis:1", false, "redis", 1, 0, "", "s3cret"},
      {"redis://sidecar:p%40ss%3Aw@redis:65535/2", false, "redis", 65535, 2, "sidecar", "p@ss:w"},
      {"redis://:onlypass@redis", false, "redis", 6379, 0, "", "onlypass"},
      {"redis://[::1]:7000/0", false, "::1", 7000, 0, "", ""},
      {"redis://[::1]", false, "::1", 6379, 0, "", ""},
  };
  for (const auto& r : rows) {
    std::string err;
    const auto u = redis_url::parse(r.text, &err);
    ASSERT_TRUE(u) << r.text << ": " << err;
    EXPECT_EQ(u->tls, r.tls) << r.text;
    EXPECT_EQ(u->host, r.host) << r.text;
    EXPECT_EQ(u->port, r.port) << r.text;
    EXPECT_EQ(u->db, r.db) << r.text;
    EXPECT_EQ(u->user, r.user) << r.text;
    EXPECT_EQ(u->password, r.password) << r.text;
  }
}

TEST(RedisUrlTest, RejectsWithAReason) {
  struct row {
    const char* text;
    const char* why;
  };
  const row rows[] = {
      {"http://redis:6379", "redis://"}, {"redis://", "no host"},          {"redis://:6379", "no host"},
      {"redis://redis:0", "port"},       {"redis://redis:65536", "port"},  {"redis://redis:63x9", "port"},
      {"redis://redis/x", "database"},   {"redis://redis/-1", "database"}, {"redis://u:p%4@redis", "percent"},
      {"redis://[::1", "IPv6"},          {"redis://[::1]x", "IPv6"},
  };
  for (const auto& r : rows) {
    std::string err;
    EXPECT_FALSE(redis_url::parse(r.text, &err)) << r.text;
    EXPECT_NE(err.find(r.why), std::string::npos) << r.text << " -> " << err;
  }
}

TEST(RedisUrlTest, RedactedNeverShowsThePassword) {
  EXPECT_EQ(redis_url::parse("redis://u:hunter2@redis:6379/1")->redacted(), "redis://u:***@redis:6379/1");
  EXPECT_EQ(redis_url::parse("rediss://hunter2@redis")->redacted(), "rediss://:***@redis:6379/0");
  EXPECT_EQ(redis_url::parse("redis://redis")->redacted(), "redis://redis:6379/0");
  EXPECT_EQ(redis_url::parse("redis://[::1]:1")->redacted(), "redis://[::1]:1/0");
}

}  // namespace
}  // namespace okta_sidecar::fleet
