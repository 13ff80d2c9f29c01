#include "okta_sidecar/ratelimit/classifier.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>

#include "okta_sidecar/embedded_buckets_json.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using ::testing::HasSubstr;

const classifier& builtin_table() {
  static const classifier c = classifier::builtin();
  return c;
}

struct sample {
  const char* method;
  const char* target;
  const char* group;
  const char* bucket;  // nullptr: same as group
  bool rate_limited = true;
  bool per_principal = false;
};

classification expected_of(const sample& s) {
  return {s.group, s.bucket ? s.bucket : s.group, s.rate_limited, s.per_principal, false, std::nullopt};
}

// Hand-written from docs/okta-behaviour.md's endpoint table and Okta's method/path/bucket map
// (docs/okta-behaviour.md, "Endpoint groups"), independently of
// the shipped JSON, so a wrong table row is caught here.
const sample samples[] = {
    // users-list / users-create and sub-resources
    {"GET", "/api/v1/users", "users", nullptr},
    {"POST", "/api/v1/users", "users", nullptr},
    {"GET", "/api/v1/users/00u1/groups", "users", nullptr},
    {"POST", "/api/v1/users/00u1/lifecycle/activate", "users", nullptr},
    {"GET", "/api/v1/users/00u1/factors/fac1", "users", nullptr},
    {"POST", "/api/v1/users/me", "users", nullptr},
    {"PUT", "/api/v1/users/me", "users", nullptr},
    {"GET", "/api/v1/users/me/appLinks", "users", nullptr},
    {"PATCH", "/api/v1/users/00u1", "users", nullptr},
    // user by id
    {"GET", "/api/v1/users/00u1", "user-get", nullptr},
    {"HEAD", "/api/v1/users/00u1", "user-get", nullptr},
    {"GET", "/api/v1/users/jdoe%40example.com", "user-get", nullptr},
    {"GET", "/api/v1/users/a%2Fb", "user-get", nullptr},
    {"POST", "/api/v1/users/00u1", "user-writes", nullptr},
    {"PUT", "/api/v1/users/00u1", "user-writes", nullptr},
    {"DELETE", "/api/v1/users/00u1", "user-writes", nullptr},
    {"GET", "/api/v1/users/me", "users-me", nullptr, true, true},
    {"POST", "/api/v1/users/00u1/factors/fac1/verify", "user-factor-verify", nullptr},
    // groups
    {"GET", "/api/v1/groups", "groups", nullptr},
    {"POST", "/api/v1/groups", "groups", nullptr},
    {"GET", "/api/v1/groups/00g1/users", "groups", nullptr},
    {"PUT", "/api/v1/groups/00g1/users/00u1", "groups", nullptr},
    {"POST", "/api/v1/groups/00g1", "groups", nullptr},
    {"GET", "/api/v1/groups/rules", "groups", nullptr},
    {"DELETE", "/api/v1/groups/rules/0pr1", "groups", nullptr},
    {"GET", "/api/v1/groups/00g1", "group-by-id", nullptr},
    {"PUT", "/api/v1/groups/00g1", "group-by-id", nullptr},
    {"DELETE", "/api/v1/groups/00g1", "group-by-id", nullptr},
    {"GET", "/api/v1/groups/00g1/skinny_users", "group-skinny-users", nullptr},
    // apps
    {"GET", "/api/v1/apps", "apps", nullptr},
    {"POST", "/api/v1/apps", "apps", nullptr},
    {"GET", "/api/v1/apps/0oa1/users", "apps", nullptr},
    {"POST", "/api/v1/apps/0oa1/lifecycle/activate", "apps", nullptr},
    {"POST", "/api/v1/apps/0oa1", "apps", nullptr},
    {"GET", "/api/v1/apps/user/types", "apps", nullptr},
    {"PUT", "/api/v1/apps/rampAssignmentGrant", "apps", nullptr},
    {"GET", "/api/v1/apps/0oa1", "app-by-id", nullptr},
    {"PUT", "/api/v1/apps/0oa1", "app-by-id", nullptr},
    {"DELETE", "/api/v1/apps/0oa1", "app-by-id", nullptr},
    {"GET", "/api/v1/apps/0oa1/skinny_users", "app-skinny-users", nullptr},
    // authn (per principal)
    {"POST", "/api/v1/authn", "authn", nullptr, true, true},
    {"POST", "/api/v1/authn/recovery/password", "authn", nullptr, true, true},
    {"POST", "/api/v1/authn/factors/fac1/verify", "authn-factor-verify", nullptr, true, true},
    {"POST", "/api/v1/authn/factors/fac1/transactions/tx1/verify", "authn-transaction-verify", nullptr, true,
     true},
    {"POST", "/api/v1/authn/introspect", "authn-introspect", nullptr, true, true},
    {"POST", "/api/v1/authn/poll", "authn-poll", nullptr, true, true},
    // sessions, logs, events
    {"POST", "/api/v1/sessions", "sessions", nullptr},
    {"GET", "/api/v1/sessions/me", "sessions", nullptr},
    {"DELETE", "/api/v1/sessions/102abc", "sessions", nullptr},
    {"GET", "/api/v1/logs", "logs", nullptr},
    {"HEAD", "/api/v1/logs", "logs", nullptr},
    {"POST", "/api/v1/logs", "other-api", nullptr},
    {"GET", "/api/v1/events", "events", nullptr},
    // groups learned from Okta's map
    {"GET", "/api/v1/agentPools/x/updates", "agent-pools", nullptr},
    {"GET", "/api/v1/analytics/counts", "analytics", nullptr},
    {"GET", "/api/v1/artifacts/a1/latest", "artifacts", nullptr},
    {"GET", "/api/v1/certificateAuthorities", "certificate-authorities", nullptr},
    {"GET", "/api/v1/device-assurances/d1", "device-assurances", nullptr},
    {"GET", "/api/v1/devices", "devices", nullptr},
    {"POST", "/api/v1/devices/d1/lifecycle/suspend", "devices", nullptr},
    {"GET", "/api/v1/devices/d1/users", "device-users", nullptr},
    {"PUT", "/api/v1/devices/d1/users/u1", "devices", nullptr},
    {"POST", "/api/v1/domains/d1/verify", "domains", nullptr},
    {"GET", "/api/v1/hook-keys/public/k1", "hook-keys", nullptr},
    {"GET", "/api/v1/iam/roles", "iam", nullptr},
    {"GET", "/api/v1/identity-sources/is1/sessions", "identity-source-sessions", nullptr},
    {"POST", "/api/v1/identity-sources/is1/sessions/s1/bulk-delete", "identity-source-bulk-delete", nullptr},
    {"POST", "/api/v1/identity-sources/is1/sessions/s1/bulk-upsert", "identity-source-bulk-upsert", nullptr},
    {"POST", "/api/v1/identity-sources/is1/sessions/s1/start-import", "identity-source-start-import",
     nullptr},
    {"POST", "/api/v1/org/email/bounces/remove-list", "org-email-bounces", nullptr},
    {"POST", "/api/v1/orgs", "orgs-create", nullptr},
    {"GET", "/api/v1/orgs/o1", "other-api", nullptr},
    {"PUT", "/api/v1/principal-rate-limits/p1", "principal-rate-limits", nullptr},
    {"GET", "/api/v1/push-providers", "push-providers", nullptr},
    {"GET", "/api/v1/ratelimit/tracked-buckets/match", "ratelimit-admin", nullptr},
    {"POST", "/api/v1/ratelimit/warning-threshold", "ratelimit-admin", nullptr},
    {"GET", "/api/v1/ratelimit/tracked-buckets", "ratelimit-tracked-buckets", nullptr},
    {"GET", "/api/v1/ratelimit/usage-snapshot", "ratelimit-usage-snapshot", nullptr},
    {"GET", "/api/v1/ratelimit/usage/b1", "ratelimit-usage", nullptr},
    {"GET", "/api/v1/ratelimit/usage/b1/status", "ratelimit-usage-status", nullptr},
    {"GET", "/api/v1/ratelimit/warning-threshold", "ratelimit-warning-threshold", nullptr},
    {"GET", "/api/v1/registration/form", "registration", nullptr},
    {"POST", "/api/v1/risk/events/ip", "risk-events", nullptr},
    {"GET", "/api/v1/risk/providers", "risk-providers", nullptr},
    // OAuth 2.0: per authorization server instances
    {"GET", "/oauth2/v1/clients", "oauth2-clients", nullptr},
    {"DELETE", "/oauth2/v1/clients/0oa1", "oauth2-clients", nullptr},
    {"POST", "/oauth2/v1/token", "oauth2-token", "oauth2-token:org"},
    {"OPTIONS", "/oauth2/v1/token", "oauth2-token", "oauth2-token:org"},
    {"POST", "/oauth2/default/v1/token", "oauth2-token", "oauth2-token:default"},
    {"POST", "/oauth2/aus9xyz/v1/token", "oauth2-token", "oauth2-token:aus9xyz"},
    {"GET", "/oauth2/v1/token", "other-oauth", "other-oauth:org"},
    {"GET", "/oauth2/v1/authorize", "oauth2-authorize", "oauth2-authorize:org", true, true},
    {"GET", "/oauth2/default/v1/authorize", "oauth2-authorize", "oauth2-authorize:default", true, true},
    {"POST", "/oauth2/default/v1/authorize", "other-oauth", "other-oauth:default"},
    {"POST", "/oauth2/v1/interact", "oauth2-interact", "oauth2-interact:org"},
    {"POST", "/oauth2/default/v1/interact", "oauth2-interact", "oauth2-interact:default"},
    {"OPTIONS", "/oauth2/default/v1/par", "oauth2-par-preflight", "oauth2-par-preflight:default"},
    {"POST", "/oauth2/default/v1/par", "other-oauth", "other-oauth:default"},
    {"GET", "/oauth2/v1/keys", "oauth2-keys", nullptr, false},
    {"GET", "/oauth2/default/v1/keys", "oauth2-keys", nullptr, false},
    {"GET", "/.well-known/openid-configuration", "well-known", nullptr, false},
    {"GET", "/.well-known/okta-organization", "well-known", nullptr, false},
    {"GET", "/oauth2/default/.well-known/oauth-authorization-server", "well-known", nullptr, false},
    {"POST", "/oauth2/v1/introspect", "other-oauth", "other-oauth:org"},
    {"POST", "/oauth2/v1/revoke", "other-oauth", "other-oauth:org"},
    {"GET", "/oauth2/default/v1/userinfo", "other-oauth", "other-oauth:default"},
    {"GET", "/oauth2/code", "other-oauth", "other-oauth:oauth2"},
    {"POST", "/oauth2/auth/jwt", "other-oauth", "other-oauth:oauth2"},
    // catch-alls
    {"GET", "/api/v1/policies", "other-api", nullptr},
    {"GET", "/api/v1", "other-api", nullptr},
    {"GET", "/api/v1/usersX", "other-api", nullptr},  // prefixes end at segment boundaries
    {"GET", "/oauth2/auth", "default", nullptr},
    {"POST", "/oauth2/authorize", "default", nullptr},
    {"GET", "/", "default", nullptr},
    {"GET", "/login/default", "default", nullptr},
    {"GET", "/api/v2/things", "default", nullptr},
    // methods: case-sensitive (RFC 9110 §9.1), unknown ones only match "*"
    {"get", "/api/v1/logs", "other-api", nullptr},
    {"PROPFIND", "/api/v1/logs", "other-api", nullptr},
    {"PROPFIND", "/api/v1/users/00u1", "users", nullptr},
    {"", "/api/v1/users/00u1", "users", nullptr},
    // query strings, fragments, absolute-form and non-normal spellings
    {"GET", "/api/v1/users?search=profile.login%20eq%20%22x%22&limit=200", "users", nullptr},
    {"GET", "/api/v1/users/me?expand=blocks", "users-me", nullptr, true, true},
    {"POST", "/oauth2/default/v1/token?foo=/api/v1/logs", "oauth2-token", "oauth2-token:default"},
    {"GET", "/api/v1/logs#x", "logs", nullptr},
    {"GET", "https://acme.okta.com/api/v1/logs?since=2024-01-01", "logs", nullptr},
    {"GET", "/api/v1/users/00u1/", "user-get", nullptr},
    {"GET", "//api//v1/users/00u1", "user-get", nullptr},
    {"GET", "/api/v1/users/00u1/groups/..", "user-get", nullptr},
    {"GET", "/api/v1/%75sers/00u1", "user-get", nullptr},
    {"GET", "/api/v1/users/./me", "users-me", nullptr, true, true},
    {"POST", "/oauth2/%64efault/v1/token", "oauth2-token", "oauth2-token:default"},
};

class ClassifyBuiltin : public ::testing::TestWithParam<sample> {};

TEST_P(ClassifyBuiltin, Classifies) {
  const auto& s = GetParam();
  auto got = builtin_table().classify(s.method, s.target);
  got.instance = false;  // checked by ClassifierIssue14 below
  EXPECT_EQ(got, expected_of(s)) << s.method << ' ' << s.target;
}

INSTANTIATE_TEST_SUITE_P(Samples, ClassifyBuiltin, ::testing::ValuesIn(samples));

TEST(Classifier, SamplesCoverEveryShippedGroup) {
  std::set<std::string> sampled;
  for (const auto& s : samples) sampled.insert(s.group);
  for (const auto& g : builtin_table().groups()) EXPECT_TRUE(sampled.count(g)) << "no sample for group " << g;
}

TEST(Classifier, GroupsAreInTableOrder) {
  const auto groups = builtin_table().groups();
  ASSERT_GE(groups.size(), 3u);
  EXPECT_EQ(groups.front(), "users");
  EXPECT_EQ(groups.back(), "default");
}

TEST(Classifier, TypicalLimitsComeFromTable) {
  EXPECT_EQ(builtin_table().typical_limit("users"), 600);
  EXPECT_EQ(builtin_table().typical_limit("oauth2-token"), 2000);
  EXPECT_EQ(builtin_table().typical_limit("agent-pools"), std::nullopt);
  EXPECT_EQ(builtin_table().typical_limit("no-such-group"), std::nullopt);
}

// Every match row of the shipped file, generated from the file itself: substitute each
// {param}, append two segments no row names for "/*", try each listed method (GET, POST,
// DELETE and an unknown one for "*"), and expect that row's group and bucket.
TEST(Classifier, EveryShippedRowClassifiesToItsGroup) {
  const auto doc = nlohmann::json::parse(okta_sidecar::embedded_buckets_json);
  int rows = 0;
  for (const auto& g : doc["groups"]) {
    const auto group = g["name"].get<std::string>();
    for (const auto& m : g["match"]) {
      ++rows;
      const auto pattern = m["path"].get<std::string>();
      std::string path, bucket = m.value("bucket", group);
      int param = 0;
      std::size_t pos = 1;
      while (pos <= pattern.size() && pattern != "/") {
        auto slash = pattern.find('/', pos);
        if (slash == std::string::npos) slash = pattern.size();
        const auto seg = pattern.substr(pos, slash - pos);
        if (seg == "*") {
          path += "/zq-sub/zq-leaf";
        } else if (seg.front() == '{') {
          const auto value = "p" + std::to_string(param++) + "x";
          path += "/" + value;
          const auto at = bucket.find(seg);
          if (at != std::string::npos) bucket.replace(at, seg.size(), value);
        } else {
          path += "/" + seg;
        }
        pos = slash + 1;
      }
      if (path.empty()) path = "/";
      std::vector<std::string> methods;
      if (m["methods"].is_string()) {
        methods = {"GET", "POST", "DELETE", "PROPFIND"};
      } else {
        for (const auto& x : m["methods"]) methods.push_back(x.get<std::string>());
      }
      for (const auto& method : methods) {
        const auto got = builtin_table().classify(method, path + "?q=1");
        EXPECT_EQ(got.group, group) << method << ' ' << path << " (row " << pattern << ")";
        EXPECT_EQ(got.bucket, bucket) << method << ' ' << path;
        EXPECT_EQ(got.rate_limited, g.value("rate_limited", true)) << path;
        EXPECT_EQ(got.per_principal, g.value("per_principal", false)) << path;
      }
    }
  }
  EXPECT_GT(rows, 60);
}

TEST(Classifier, DeepPathsStillMatchPrefixes) {
  std::string deep = "/api/v1/users/00u1";
  for (int i = 0; i < 40; ++i) deep += "/s" + std::to_string(i);
  EXPECT_EQ(builtin_table().classify("GET", deep).group, "users");
  std::string very_deep;
  for (int i = 0; i < 40; ++i) very_deep += "/s";
  EXPECT_EQ(builtin_table().classify("GET", very_deep).group, "default");
}

TEST(Classifier, EmptyTableFallsBackToDefault) {
  const auto c = classifier::from_json(R"({"groups": []})", "empty.json");
  EXPECT_EQ(c.classify("GET", "/api/v1/users"),
            (classification{"default", "default", true, false, false, std::nullopt}));
  EXPECT_TRUE(c.groups().empty());
  EXPECT_EQ(classifier{}.classify("GET", "/api/v1/users").group, "default");  // no table at all
}

TEST(Classifier, SpecificityOrder) {
  const auto c = classifier::from_json(R"({"groups": [
    {"name": "any",        "match": [{"methods": "*", "path": "/*"}]},
    {"name": "a-prefix",   "match": [{"methods": "*", "path": "/a/*"}]},
    {"name": "ab-prefix",  "match": [{"methods": "*", "path": "/a/b/*"}]},
    {"name": "a-param",    "match": [{"methods": "*", "path": "/a/{x}"}]},
    {"name": "a-param-c",  "match": [{"methods": "*", "path": "/a/{x}/c"}]},
    {"name": "ab-exact",   "match": [{"methods": "*", "path": "/a/b"}]},
    {"name": "ab-get",     "match": [{"methods": ["GET"], "path": "/a/b"}]},
    {"name": "root",       "match": [{"methods": "*", "path": "/"}]}
  ]})",
                                       "order.json");
  const std::pair<const char*, const char*> cases[] = {
      {"/", "root"},           {"/z", "any"},          {"/a", "a-prefix"},      {"/a/q", "a-param"},
      {"/a/q/c", "a-param-c"}, {"/a/q/d", "a-prefix"}, {"/a/b/c", "ab-prefix"}, {"/a/b/c/d", "ab-prefix"},
  };
  for (const auto& [path, group] : cases) EXPECT_EQ(c.classify("POST", path).group, group) << path;
  // Same shape: an explicit method list beats "*".
  EXPECT_EQ(c.classify("GET", "/a/b").group, "ab-get");
  EXPECT_EQ(c.classify("POST", "/a/b").group, "ab-exact");
}

// The rows are indexed by their third segment: a literal third segment, a parameter there, a
// prefix ending before it and a shorter path must all still be found in specificity order (the
// same answers as the linear scan before the index gave).
TEST(Classifier, ThirdSegmentIndexKeepsSpecificityOrder) {
  const auto c = classifier::from_json(R"({"groups": [
    {"name": "xy-prefix",  "match": [{"methods": "*", "path": "/x/y/*"}]},
    {"name": "x-prefix",   "match": [{"methods": "*", "path": "/x/*"}]},
    {"name": "xy-param",   "match": [{"methods": "*", "path": "/x/y/{id}"}]},
    {"name": "xy-z",       "match": [{"methods": "*", "path": "/x/y/z"}]},
    {"name": "xy-z-param", "match": [{"methods": "*", "path": "/x/y/z/{id}"}]},
    {"name": "x-param-z",  "match": [{"methods": "*", "path": "/x/{a}/{b}/z"}]}
  ]})",
                                       "third.json");
  const std::pair<const char*, const char*> cases[] = {
      {"/x/y/z", "xy-z"},        {"/x/y/q", "xy-param"},    {"/x/y/z/1", "xy-z-param"},
      {"/x/y/q/z", "xy-prefix"}, {"/x/w/q/z", "x-param-z"}, {"/x/w/z/k", "x-prefix"},
      {"/x/y/q/k", "xy-prefix"}, {"/x/y", "xy-prefix"},     {"/q/y/z", "default"},
  };
  for (const auto& [path, group] : cases) EXPECT_EQ(c.classify("GET", path).group, group) << path;
}

TEST(Classifier, BucketTemplateSubstitutesParameters) {
  const auto c = classifier::from_json(R"({"groups": [
    {"name": "t", "match": [{"methods": "*", "path": "/x/{a}/y/{b}/*", "bucket": "t:{b}.{a}:z"}]}
  ]})",
                                       "tmpl.json");
  EXPECT_EQ(c.classify("GET", "/x/1/y/2/3/4").bucket, "t:2.1:z");
  EXPECT_EQ(c.classify("GET", "/x/1/y/2").bucket, "t:2.1:z");
}

TEST(Classifier, MergeReplacesSameNamesAndAddsNewOnes) {
  auto c = classifier::builtin();
  const auto overrides = classifier::from_json(R"({"groups": [
    {"name": "logs", "typical_limit": 20, "match": [{"methods": ["GET"], "path": "/api/v1/logs", "bucket": "logs-slow"}]},
    {"name": "events", "match": [{"methods": ["GET"], "path": "/api/v1/events-archive"}]},
    {"name": "user-lifecycle", "per_principal": true, "capacity_percent": 40,
     "match": [{"methods": ["POST"], "path": "/api/v1/users/{id}/lifecycle/*"}]},
    {"name": "my-apps", "match": [{"methods": "*", "path": "/api/v1/apps/*"}]},
    {"name": "well-known", "rate_limited": true, "match": [{"methods": ["GET"], "path": "/.well-known/*"}]}
  ]})",
                                               "overrides.json");
  const auto before = c.groups().size();
  c.merge(overrides);

  EXPECT_EQ(c.classify("GET", "/api/v1/logs"),
            (classification{"logs", "logs-slow", true, false, false, std::nullopt}));
  EXPECT_EQ(c.typical_limit("logs"), 20);
  // The old events row is gone with the group it belonged to.
  EXPECT_EQ(c.classify("GET", "/api/v1/events").group, "other-api");
  EXPECT_EQ(c.classify("GET", "/api/v1/events-archive").group, "events");
  EXPECT_EQ(c.classify("POST", "/api/v1/users/00u1/lifecycle/activate"),
            (classification{"user-lifecycle", "user-lifecycle", true, true, false, 40u}));
  EXPECT_EQ(c.classify("GET", "/api/v1/users/00u1/lifecycle").group, "users");
  // Same shape as the built-in apps row: the override wins the tie.
  EXPECT_EQ(c.classify("GET", "/api/v1/apps").group, "my-apps");
  EXPECT_EQ(c.classify("GET", "/api/v1/apps/0oa1").group, "app-by-id");  // still more specific
  EXPECT_TRUE(c.classify("GET", "/.well-known/openid-configuration").rate_limited);
  // The keys rows of the replaced well-known group's neighbour are untouched.
  EXPECT_FALSE(c.classify("GET", "/oauth2/v1/keys").rate_limited);

  const auto groups = c.groups();
  EXPECT_EQ(groups.size(), before + 2);
  EXPECT_EQ(groups[groups.size() - 2], "user-lifecycle");
  EXPECT_EQ(groups.back(), "my-apps");
}

TEST(Classifier, LaterMergeWinsOverEarlierMerge) {
  auto c =
      classifier::from_json(R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/x"}]}]})", "a");
  c.merge(classifier::from_json(R"({"groups": [{"name": "b", "match": [{"methods": "*", "path": "/x"}]}]})",
                                "b"));
  EXPECT_EQ(c.classify("GET", "/x").group, "b");
  c.merge(classifier::from_json(R"({"groups": [{"name": "c", "match": [{"methods": "*", "path": "/x"}]}]})",
                                "c"));
  EXPECT_EQ(c.classify("GET", "/x").group, "c");
}

struct bad_table {
  const char* name;
  const char* json;
  std::vector<const char*> message_parts;
};

const bad_table bad_tables[] = {
    {"NotJson", R"({"groups": [)", {"JSON"}},
    {"TopLevelArray", R"([])", {"top level"}},
    {"UnknownTopKey", R"({"grups": []})", {"grups", "unknown key"}},
    {"WrongVersion", R"({"version": 2, "groups": []})", {"version", "unsupported"}},
    {"MissingGroups", R"({"version": 1})", {"groups", "required"}},
    {"GroupNotObject", R"({"groups": ["users"]})", {"groups[0]", "object"}},
    {"GroupWithoutName", R"({"groups": [{"match": []}]})", {"groups[0].name", "required"}},
    {"UpperCaseName",
     R"({"groups": [{"name": "Users", "match": [{"methods": "*", "path": "/x"}]}]})",
     {"\"Users\"", "name", "lower-case"}},
    {"DuplicateName",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/x"}]},
                    {"name": "a", "match": [{"methods": "*", "path": "/y"}]}]})",
     {"groups[1]", "duplicate group name \"a\""}},
    {"UnknownGroupKey",
     R"({"groups": [{"name": "a", "ratelimited": false, "match": [{"methods": "*", "path": "/x"}]}]})",
     {"\"a\".ratelimited", "unknown key"}},
    {"RateLimitedNotBool",
     R"({"groups": [{"name": "a", "rate_limited": "no", "match": [{"methods": "*", "path": "/x"}]}]})",
     {"\"a\".rate_limited", "true or false"}},
    {"NegativeTypicalLimit",
     R"({"groups": [{"name": "a", "typical_limit": -5, "match": [{"methods": "*", "path": "/x"}]}]})",
     {"\"a\".typical_limit", "positive integer"}},
    {"CapacityPercentZero",
     R"({"groups": [{"name": "a", "capacity_percent": 0, "match": [{"methods": "*", "path": "/x"}]}]})",
     {"\"a\".capacity_percent", "1 to 100"}},
    {"CapacityPercentTooLarge",
     R"({"groups": [{"name": "a", "capacity_percent": 101, "match": [{"methods": "*", "path": "/x"}]}]})",
     {"\"a\".capacity_percent", "1 to 100"}},
    {"MissingMatch", R"({"groups": [{"name": "a"}]})", {"\"a\".match", "required"}},
    {"EmptyMatch", R"({"groups": [{"name": "a", "match": []}]})", {"\"a\".match", "non-empty"}},
    {"UnknownMatchKey",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "paths": "/x"}]}]})",
     {"\"a\".match[0].paths", "unknown key"}},
    {"MissingPath",
     R"({"groups": [{"name": "a", "match": [{"methods": "*"}]}]})",
     {"\"a\".match[0].path", "required"}},
    {"RelativePath",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "api/v1"}]}]})",
     {"match[0].path \"api/v1\"", "start with '/'"}},
    {"EmptySegment",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/api//v1"}]}]})",
     {"\"/api//v1\"", "empty segment"}},
    {"TrailingSlash",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/api/"}]}]})",
     {"\"/api/\"", "empty segment"}},
    {"StarNotLast",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/api/*/v1"}]}]})",
     {"\"/api/*/v1\"", "'*' may only be the last segment"}},
    {"UnclosedParam",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/api/{id"}]}]})",
     {"\"/api/{id\"", "bad parameter"}},
    {"EmptyParam",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/api/{}"}]}]})",
     {"bad parameter"}},
    {"RepeatedParam",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/u/{id}/g/{id}"}]}]})",
     {"parameter {id} appears twice"}},
    {"EncodedLiteral",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/a%2Fb"}]}]})",
     {"\"a%2Fb\"", "not a normalised path segment"}},
    {"DotSegment",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/a/../b"}]}]})",
     {"\"..\"", "not a normalised path segment"}},
    {"MissingMethods",
     R"({"groups": [{"name": "a", "match": [{"path": "/x"}]}]})",
     {"\"a\".match[0].methods", "required"}},
    {"MethodsBareString",
     R"({"groups": [{"name": "a", "match": [{"methods": "GET", "path": "/x"}]}]})",
     {"match[0].methods", "\"*\" or a non-empty list"}},
    {"MethodsEmptyList",
     R"({"groups": [{"name": "a", "match": [{"methods": [], "path": "/x"}]}]})",
     {"match[0].methods", "non-empty list"}},
    {"LowerCaseMethod",
     R"({"groups": [{"name": "a", "match": [{"methods": ["get"], "path": "/x"}]}]})",
     {"match[0].methods", "unknown method \"get\""}},
    {"NonStringMethod",
     R"({"groups": [{"name": "a", "match": [{"methods": [1], "path": "/x"}]}]})",
     {"match[0].methods", "must be strings"}},
    {"BucketUnknownParam",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/x/{id}", "bucket": "a:{nope}"}]}]})",
     {"match[0].bucket", "{nope} is not a parameter of the path /x/{id}"}},
    {"BucketUnbalanced",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/x/{id}", "bucket": "a:{id"}]}]})",
     {"match[0].bucket", "unbalanced '{'"}},
    {"BucketEmpty",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/x", "bucket": ""}]}]})",
     {"match[0].bucket", "non-empty"}},
    {"AmbiguousRows",
     R"({"groups": [{"name": "a", "match": [{"methods": ["GET", "POST"], "path": "/u/{id}"}]},
                    {"name": "b", "match": [{"methods": ["POST"], "path": "/u/{userId}"}]}]})",
     {"groups \"a\" and \"b\"", "/u/{id}", "/u/{userId}"}},
    {"AmbiguousWithinGroup",
     R"({"groups": [{"name": "a", "match": [{"methods": "*", "path": "/x/*"}, {"methods": "*", "path": "/x/*"}]}]})",
     {"groups \"a\" and \"a\"", "/x/*"}},
};

class RejectsBadTable : public ::testing::TestWithParam<bad_table> {};

TEST_P(RejectsBadTable, WithMessageNamingTheFault) {
  const auto& b = GetParam();
  try {
    (void)classifier::from_json(b.json, "test-buckets.json");
    FAIL() << "accepted: " << b.json;
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), ::testing::StartsWith("test-buckets.json: "));
    for (const auto* part : b.message_parts) EXPECT_THAT(e.what(), HasSubstr(part));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RejectsBadTable, ::testing::ValuesIn(bad_tables),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Classifier, SameShapeWithDisjointMethodsIsAccepted) {
  const auto c = classifier::from_json(R"({"groups": [
    {"name": "a", "match": [{"methods": ["GET"], "path": "/u/{id}"}]},
    {"name": "b", "match": [{"methods": ["POST", "PUT"], "path": "/u/{userId}"}]}]})",
                                       "ok.json");
  EXPECT_EQ(c.classify("GET", "/u/1").group, "a");
  EXPECT_EQ(c.classify("PUT", "/u/1").group, "b");
  EXPECT_EQ(c.classify("DELETE", "/u/1").group, "default");
}

}  // namespace
}  // namespace okta_sidecar::ratelimit

namespace okta_sidecar::ratelimit {
namespace {

TEST(ClassifierIssue14, InstancesAreMarkedAndLiteralNamesListed) {
  const auto c = classifier::builtin();
  const auto t = c.classify("POST", "/oauth2/aus1abc/v1/token");
  EXPECT_EQ(t.bucket, "oauth2-token:aus1abc");
  EXPECT_TRUE(t.instance);
  EXPECT_FALSE(c.classify("POST", "/oauth2/v1/token").instance);
  EXPECT_FALSE(c.classify("GET", "/api/v1/users").instance);
  const auto names = c.literal_buckets();
  for (const char* n : {"oauth2-token:org", "oauth2-token", "default"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  for (const auto& n : names) EXPECT_EQ(n.find('{'), std::string::npos) << n;
}

}  // namespace
}  // namespace okta_sidecar::ratelimit
