#include "okta_sidecar/cache/document_cache.hpp"

#include <gtest/gtest.h>

#include "fake_clock.hpp"

namespace okta_sidecar::cache {
namespace {

using std::chrono::seconds;

document doc(std::string body, int status = 200) {
  return document{status, {{"Content-Type", "application/json"}}, std::move(body)};
}
cache_control cc(std::string_view v) { return parse_cache_control({v}); }

TEST(CacheControlTest, ParsesOktasKeysHeader) {
  const auto c = cc("max-age=3832, must-revalidate");
  EXPECT_EQ(c.max_age, 3832);
  EXPECT_TRUE(c.must_revalidate);
  EXPECT_FALSE(c.no_store);
}

TEST(CacheControlTest, DirectivesAreCaseInsensitiveAcrossFieldsAndQuotedCommasStayInside) {
  const auto c = parse_cache_control({"Max-Age=\"60\"", "NO-STORE, private=\"a, b\", no-cache"});
  EXPECT_EQ(c.max_age, 60);
  EXPECT_TRUE(c.no_store);
  EXPECT_TRUE(c.is_private);
  EXPECT_TRUE(c.no_cache);
}

TEST(CacheControlTest, InvalidOrRepeatedMaxAgeMeansStale) {
  EXPECT_EQ(cc("max-age=abc").max_age, 0);
  EXPECT_EQ(cc("max-age=-5").max_age, 0);
  EXPECT_EQ(cc("max-age=60, max-age=70").max_age, 0);
  EXPECT_EQ(cc("max-age=99999999999999999999").max_age, 2147483648);
  EXPECT_FALSE(cc("public").max_age.has_value());
}

TEST(PublicDocumentTest, OnlyKeysAndDiscovery) {
  for (const char* p : {"/oauth2/v1/keys", "/oauth2/default/v1/keys", "/oauth2/aus1/v1/keys?client_id=x",
                        "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server",
                        "/oauth2/default/.well-known/openid-configuration"}) {
    EXPECT_TRUE(is_public_document(p)) << p;
  }
  for (const char* p : {"/api/v1/users", "/oauth2/v1/token", "/oauth2/default/v1/token", "/oauth2//v1/keys",
                        "/oauth2/a/b/v1/keys", "/.well-known/", "/oauth2/v1/keys/extra", "/x/.well-known/a",
                        "/oauth2/default/v1/userinfo"}) {
    EXPECT_FALSE(is_public_document(p)) << p;
  }
}

class DocumentCacheTest : public ::testing::Test {
 protected:
  time_point now() const { return clock_.now(); }
  testing::fake_clock clock_;
};

TEST_F(DocumentCacheTest, FreshUntilMaxAgeThenStale) {
  document_cache c;
  EXPECT_EQ(c.lookup("k", now()).kind, lookup_kind::miss);
  ASSERT_TRUE(c.store("k", doc("{}"), cc("max-age=60, must-revalidate"), now()));
  clock_.advance(seconds(59));
  const auto hit = c.lookup("k", now());
  ASSERT_EQ(hit.kind, lookup_kind::fresh);
  EXPECT_EQ(hit.doc->body, "{}");
  EXPECT_EQ(hit.age, seconds(59));
  clock_.advance(seconds(1));
  EXPECT_EQ(c.lookup("k", now()).kind, lookup_kind::stale);  // must go to Okta
  EXPECT_EQ(c.counters().hits, 1u);
}

TEST_F(DocumentCacheTest, UpstreamAgeCountsAgainstTheLifetime) {
  document_cache c;
  auto d = doc("{}");
  d.fields.emplace_back("Age", "50");
  ASSERT_TRUE(c.store("k", d, cc("max-age=60"), now()));
  const auto hit = c.lookup("k", now());
  EXPECT_EQ(hit.age, seconds(50));
  clock_.advance(seconds(10));
  EXPECT_EQ(c.lookup("k", now()).kind, lookup_kind::stale);
}

TEST_F(DocumentCacheTest, NoStorePrivateErrorsAndNoLifetimeAreNotStored) {
  document_cache c;
  EXPECT_FALSE(c.store("k", doc("{}"), cc("no-store, max-age=60"), now()));
  EXPECT_FALSE(c.store("k", doc("{}"), cc("private, max-age=60"), now()));
  EXPECT_FALSE(c.store("k", doc("{}", 500), cc("max-age=60"), now()));
  EXPECT_FALSE(c.store("k", doc("{}"), cc(""), now()));
  EXPECT_EQ(c.entries(), 0u);
  // A later no-store drops what was held.
  ASSERT_TRUE(c.store("k", doc("{}"), cc("max-age=60"), now()));
  EXPECT_FALSE(c.store("k", doc("{}"), cc("no-store"), now()));
  EXPECT_EQ(c.lookup("k", now()).kind, lookup_kind::miss);
}

TEST_F(DocumentCacheTest, NoCacheIsOnlyEverServedForErrors) {
  document_cache c;
  ASSERT_TRUE(c.store("k", doc("{}"), cc("no-cache, max-age=60"), now()));
  EXPECT_EQ(c.lookup("k", now()).kind, lookup_kind::stale);
  EXPECT_EQ(c.stale_for_error("k", now()).kind, lookup_kind::stale);
}

TEST_F(DocumentCacheTest, StaleIfErrorWindowEndsAtMaxAgePlusTheSetting) {
  cache_settings s;
  s.stale_if_error = seconds(100);
  document_cache c(s);
  ASSERT_TRUE(c.store("k", doc("{}"), cc("max-age=60, must-revalidate"), now()));
  clock_.advance(seconds(159));
  const auto r = c.stale_for_error("k", now());
  ASSERT_EQ(r.kind, lookup_kind::stale);
  EXPECT_EQ(r.age, seconds(159));
  EXPECT_EQ(c.counters().stale_served, 1u);
  clock_.advance(seconds(1));
  EXPECT_EQ(c.stale_for_error("k", now()).kind, lookup_kind::miss);
  EXPECT_EQ(c.entries(), 0u);
}

TEST_F(DocumentCacheTest, BoundedInEntriesLeastRecentlyUsedFirst) {
  cache_settings s;
  s.max_entries = 2;
  document_cache c(s);
  c.store("a", doc("1"), cc("max-age=60"), now());
  c.store("b", doc("2"), cc("max-age=60"), now());
  c.lookup("a", now());  // a is now the most recent
  c.store("c", doc("3"), cc("max-age=60"), now());
  EXPECT_EQ(c.entries(), 2u);
  EXPECT_EQ(c.lookup("b", now()).kind, lookup_kind::miss);
  EXPECT_EQ(c.lookup("a", now()).kind, lookup_kind::fresh);
  EXPECT_EQ(c.counters().evictions, 1u);
}

TEST_F(DocumentCacheTest, BoundedInBytes) {
  cache_settings s;
  s.max_bytes = 400;
  s.max_entry_bytes = 200;
  document_cache c(s);
  EXPECT_FALSE(c.store("big", doc(std::string(250, 'x')), cc("max-age=60"), now()));
  EXPECT_TRUE(c.store("a", doc(std::string(120, 'x')), cc("max-age=60"), now()));
  EXPECT_TRUE(c.store("b", doc(std::string(120, 'x')), cc("max-age=60"), now()));
  EXPECT_TRUE(c.store("c", doc(std::string(120, 'x')), cc("max-age=60"), now()));
  EXPECT_LE(c.bytes(), 400u);
  EXPECT_EQ(c.entries(), 2u);
  EXPECT_EQ(c.lookup("a", now()).kind, lookup_kind::miss);
}

TEST_F(DocumentCacheTest, DisabledHoldsNothing) {
  cache_settings s;
  s.enabled = false;
  document_cache c(s);
  EXPECT_FALSE(c.store("k", doc("{}"), cc("max-age=60"), now()));
  EXPECT_EQ(c.lookup("k", now()).kind, lookup_kind::miss);
}

}  // namespace
}  // namespace okta_sidecar::cache
