#include "okta_sidecar/auth/scope_table.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace okta_sidecar::auth {
namespace {

struct lookup_case {
  const char* method;
  const char* path;
  std::optional<std::string> scope;
};

TEST(ScopeTable, BuiltinLookups) {
  const scope_table t = scope_table::builtin();
  EXPECT_GT(t.size(), 20u);
  const std::vector<lookup_case> rows = {
      {"GET", "/api/v1/users", "okta.users.read"},
      {"HEAD", "/api/v1/users", "okta.users.read"},
      {"POST", "/api/v1/users", "okta.users.manage"},
      {"GET", "/api/v1/users/00u1", "okta.users.read"},
      {"PUT", "/api/v1/users/00u1", "okta.users.manage"},
      {"DELETE", "/api/v1/users/00u1", "okta.users.manage"},
      {"POST", "/api/v1/users/00u1/lifecycle/deactivate", "okta.users.manage"},
      {"GET", "/api/v1/users/00u1/groups", "okta.users.read"},
      {"GET", "/api/v1/users/me", "okta.users.read.self"},
      {"POST", "/api/v1/users/me", "okta.users.manage.self"},
      {"GET", "/api/v1/users/00u1/roles", "okta.roles.read"},
      {"POST", "/api/v1/users/00u1/roles", "okta.roles.manage"},
      {"GET", "/api/v1/users?q=ann&limit=200", "okta.users.read"},
      {"GET", "/api/v1/users/", "okta.users.read"},
      {"GET", "/api/v1/groups", "okta.groups.read"},
      {"PUT", "/api/v1/groups/00g1/users/00u1", "okta.groups.manage"},
      {"GET", "/api/v1/groups/00g1/roles", "okta.roles.read"},
      {"GET", "/api/v1/apps/0oa1/users", "okta.apps.read"},
      {"POST", "/api/v1/apps", "okta.apps.manage"},
      {"GET", "/api/v1/logs", "okta.logs.read"},
      {"GET", "/api/v1/logs?since=2024-01-01T00:00:00Z", "okta.logs.read"},
      {"POST", "/api/v1/logs", std::nullopt},
      {"GET", "/api/v1/logs/extra", std::nullopt},
      {"GET", "/api/v1/sessions/102abc", "okta.sessions.read"},
      {"DELETE", "/api/v1/sessions/102abc", "okta.sessions.manage"},
      {"GET", "/oauth2/v1/clients", "okta.clients.read"},
      {"POST", "/oauth2/v1/clients", "okta.clients.manage"},
      {"GET", "/api/v1/meta/schemas/user/linkedObjects", "okta.linkedObjects.read"},
      {"GET", "/api/v1/meta/schemas/user/default", "okta.schemas.read"},
      {"GET", "/api/v1/usersx", std::nullopt},
      {"GET", "/api/v1/unknown", std::nullopt},
      {"POST", "/oauth2/default/v1/token", std::nullopt},
      {"GET", "/", std::nullopt},
      {"GET", "", std::nullopt},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(t.required_scope(r.method, r.path), r.scope) << r.method << " " << r.path;
  }
}

TEST(ScopeTable, PatternSyntax) {
  const scope_table t = scope_table::from_json(R"({"rules":[
      {"path":"/a/{id}","scope":"s.one"},
      {"path":"/a/{id}/b/**","methods":["GET"],"scope":"s.tail"},
      {"path":"/a/**","methods":["*"],"scope":"s.any"}]})",
                                               "test");
  EXPECT_EQ(t.required_scope("GET", "/a/x"), "s.one");
  EXPECT_EQ(t.required_scope("GET", "//a//x/"), "s.one");  // empty segments ignored
  EXPECT_EQ(t.required_scope("GET", "/a/x/b"), "s.tail");  // ** matches zero segments
  EXPECT_EQ(t.required_scope("GET", "/a/x/b/c/d"), "s.tail");
  EXPECT_EQ(t.required_scope("POST", "/a/x/b/c"), "s.any");  // method filter falls through
  EXPECT_EQ(t.required_scope("GET", "/a"), "s.any");
  EXPECT_EQ(t.required_scope("GET", "/b"), std::nullopt);
}

TEST(ScopeTable, ReadWriteSplitAndPartialRules) {
  const scope_table t = scope_table::from_json(
      R"({"rules":[{"path":"/r","read":"x.read"},{"path":"/r","write":"x.write"}]})", "test");
  EXPECT_EQ(t.required_scope("GET", "/r"), "x.read");
  EXPECT_EQ(t.required_scope("OPTIONS", "/r"), "x.read");
  EXPECT_EQ(t.required_scope("PATCH", "/r"), "x.write");
}

TEST(ScopeTable, ManageImpliesRead) {
  const scope_table t = scope_table::builtin();
  EXPECT_TRUE(t.satisfied_by({"okta.users.read"}, "okta.users.read"));
  EXPECT_TRUE(t.satisfied_by({"okta.users.manage"}, "okta.users.read"));
  EXPECT_TRUE(t.satisfied_by({"okta.users.manage.self"}, "okta.users.read.self"));
  EXPECT_FALSE(t.satisfied_by({"okta.users.read"}, "okta.users.manage"));
  EXPECT_FALSE(t.satisfied_by({"okta.groups.manage"}, "okta.users.read"));
  EXPECT_FALSE(t.satisfied_by({"okta.users.manage"}, "okta.users.readers"));
  EXPECT_FALSE(t.satisfied_by({}, "okta.users.read"));
  const scope_table strict = scope_table::from_json(R"({"manage_implies_read":false,"rules":[]})", "test");
  EXPECT_FALSE(strict.satisfied_by({"okta.users.manage"}, "okta.users.read"));
}

TEST(ScopeTable, ErrorsNameSourceRuleAndKey) {
  struct bad {
    const char* json;
    const char* expected_fragment;
  };
  const std::vector<bad> rows = {
      {"not json", "my.json: document: is not valid JSON"},
      {"[]", "my.json: document: must be a JSON object"},
      {R"({})", "my.json: rules: must be an array"},
      {R"({"rules":[],"extra":1})", "my.json: extra: unknown key"},
      {R"({"rules":[],"manage_implies_read":"yes"})", "manage_implies_read: must be true or false"},
      {R"({"rules":[1]})", "rules[0]: must be an object"},
      {R"({"rules":[{"scope":"a.b"}]})", "rules[0].path: must be a path pattern"},
      {R"({"rules":[{"path":"x","scope":"a.b"}]})", "rules[0].path"},
      {R"({"rules":[{"path":"/a/**/b","scope":"a.b"}]})", "rules[0].path: \"**\" may only be the last"},
      {R"({"rules":[{"path":"/a/{id","scope":"a.b"}]})", "rules[0].path: bad placeholder"},
      {R"({"rules":[{"path":"/a"}]})", "rules[0]: needs \"scope\""},
      {R"({"rules":[{"path":"/a","scope":"a","read":"b"}]})", "rules[0]: use either"},
      {R"({"rules":[{"path":"/a","scope":"has space"}]})", "rules[0].scope: must be a scope name"},
      {R"({"rules":[{"path":"/a","read":5}]})", "rules[0].read: must be a scope name"},
      {R"({"rules":[{"path":"/a","read":"r","methods":["GET"]}]})", "rules[0].methods: only goes"},
      {R"({"rules":[{"path":"/a","scope":"s","methods":[]}]})", "rules[0].methods: must be a non-empty"},
      {R"({"rules":[{"path":"/a","scope":"s","methods":[1]}]})", "rules[0].methods: must hold"},
      {R"({"rules":[{"path":"/a","scope":"s"},{"path":"/b","scope":"s","mehtods":["GET"]}]})",
       "rules[1].mehtods: unknown key"},
  };
  for (const auto& r : rows) {
    try {
      (void)scope_table::from_json(r.json, "my.json");
      ADD_FAILURE() << "accepted: " << r.json;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(r.expected_fragment), std::string::npos)
          << e.what() << " for " << r.json;
    }
  }
}

}  // namespace
}  // namespace okta_sidecar::auth
