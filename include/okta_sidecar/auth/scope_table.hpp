#pragma once
// Which Okta management scope (OAuth for Okta) a method + path needs, from the shipped table
// config/okta-scopes.json. Used to turn a 403 into "missing_scope:<scope>".
//
// Table format:
//   { "manage_implies_read": true,
//     "rules": [ { "path": "/api/v1/users/me", "read": "okta.users.read.self",
//                  "write": "okta.users.manage.self" },
//                { "path": "/api/v1/logs", "methods": ["GET"], "scope": "okta.logs.read" } ] }
// A rule has either "read"/"write" (read applies to GET HEAD OPTIONS, write to every other
// method; either may be absent) or "scope" with an optional "methods" list (absent or "*" =
// any). Path patterns are split at '/': a literal segment matches itself, "{name}" matches
// exactly one non-empty segment, and a final "**" matches zero or more segments. The first
// rule that matches wins, so specific rules come first.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace okta_sidecar::auth {

class scope_table {
 public:
  // The table embedded from config/okta-scopes.json. Throws std::runtime_error if the
  // shipped table is broken (a build defect, caught by the unit tests).
  static scope_table builtin();
  // `source` names the file in error messages. Throws std::runtime_error naming the source,
  // the rule index and the key that is wrong.
  static scope_table from_json(std::string_view text, std::string_view source);

  // `normalized_path` is the request path; a query string, if present, is ignored.
  std::optional<std::string> required_scope(std::string_view method, std::string_view normalized_path) const;

  // Whether `granted` (a token's scp) satisfies `required`; okta.X.manage also satisfies
  // okta.X.read when manage_implies_read is set.
  bool satisfied_by(const std::vector<std::string>& granted, std::string_view required) const;

  std::size_t size() const { return rules_.size(); }

 private:
  struct rule {
    std::vector<std::string> segments;  // pattern segments; last may be "**"
    std::vector<std::string> methods;   // empty = any (only with `scope`)
    std::string scope, read, write;
  };
  std::vector<rule> rules_;
  bool manage_implies_read_ = true;
};

}  // namespace okta_sidecar::auth
