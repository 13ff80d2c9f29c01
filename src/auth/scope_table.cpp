#include "okta_sidecar/auth/scope_table.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "okta_sidecar/embedded_scopes_json.hpp"

namespace okta_sidecar::auth {

namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    const std::size_t j = path.find('/', i);
    const std::size_t end = j == std::string_view::npos ? path.size() : j;
    out.push_back(path.substr(i, end - i));
    i = end;
  }
  return out;
}

bool is_read_method(std::string_view m) { return m == "GET" || m == "HEAD" || m == "OPTIONS"; }

bool valid_scope_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == ':';
  });
}

[[noreturn]] void fail(std::string_view source, const std::string& where, const std::string& what) {
  throw std::runtime_error(std::string(source) + ": " + where + ": " + what);
}

std::string optional_scope(const nlohmann::json& r, const char* key, std::string_view source,
                           const std::string& where) {
  const auto it = r.find(key);
  if (it == r.end()) return {};
  if (!it->is_string() || !valid_scope_name(it->get<std::string>())) {
    fail(source, where + "." + key, "must be a scope name such as \"okta.users.read\"");
  }
  return it->get<std::string>();
}

}  // namespace

scope_table scope_table::builtin() { return from_json(embedded_scopes_json, "<built-in okta-scopes.json>"); }

scope_table scope_table::from_json(std::string_view text, std::string_view source) {
  const nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded()) fail(source, "document", "is not valid JSON");
  if (!doc.is_object()) fail(source, "document", "must be a JSON object");
  scope_table table;
  for (const auto& [key, value] : doc.items()) {
    if (key == "manage_implies_read") {
      if (!value.is_boolean()) fail(source, key, "must be true or false");
      table.manage_implies_read_ = value.get<bool>();
    } else if (key != "rules" && key != "comment") {
      fail(source, key, "unknown key");
    }
  }
  const auto rules = doc.find("rules");
  if (rules == doc.end() || !rules->is_array()) fail(source, "rules", "must be an array");
  for (std::size_t i = 0; i < rules->size(); ++i) {
    const auto& r = (*rules)[i];
    const std::string where = "rules[" + std::to_string(i) + "]";
    if (!r.is_object()) fail(source, where, "must be an object");
    for (const auto& [key, value] : r.items()) {
      (void)value;
      if (key != "path" && key != "methods" && key != "scope" && key != "read" && key != "write" &&
          key != "comment") {
        fail(source, where + "." + key, "unknown key");
      }
    }
    rule out;
    const auto path = r.find("path");
    if (path == r.end() || !path->is_string() || path->get<std::string>().empty() ||
        path->get<std::string>().front() != '/') {
      fail(source, where + ".path", "must be a path pattern starting with '/'");
    }
    const std::string pattern = path->get<std::string>();  // split_path returns views into it
    for (const auto seg : split_path(pattern)) out.segments.emplace_back(seg);
    for (std::size_t s = 0; s < out.segments.size(); ++s) {
      const std::string& seg = out.segments[s];
      if (seg == "**" && s + 1 != out.segments.size()) {
        fail(source, where + ".path", "\"**\" may only be the last segment");
      }
      if (seg.front() == '{' && (seg.back() != '}' || seg.size() < 3)) {
        fail(source, where + ".path", "bad placeholder \"" + seg + "\"");
      }
    }
    out.scope = optional_scope(r, "scope", source, where);
    out.read = optional_scope(r, "read", source, where);
    out.write = optional_scope(r, "write", source, where);
    if (!out.scope.empty() && (!out.read.empty() || !out.write.empty())) {
      fail(source, where, "use either \"scope\" or \"read\"/\"write\", not both");
    }
    if (out.scope.empty() && out.read.empty() && out.write.empty()) {
      fail(source, where, "needs \"scope\" or \"read\"/\"write\"");
    }
    if (const auto methods = r.find("methods"); methods != r.end()) {
      if (out.scope.empty()) fail(source, where + ".methods", "only goes with \"scope\"");
      if (!methods->is_array() || methods->empty()) {
        fail(source, where + ".methods", "must be a non-empty array of method names");
      }
      for (const auto& m : *methods) {
        if (!m.is_string() || m.get<std::string>().empty()) {
          fail(source, where + ".methods", "must hold method names such as \"GET\"");
        }
        if (m.get<std::string>() == "*") {
          out.methods.clear();
          break;
        }
        out.methods.push_back(m.get<std::string>());
      }
    }
    table.rules_.push_back(std::move(out));
  }
  return table;
}

std::optional<std::string> scope_table::required_scope(std::string_view method,
                                                       std::string_view normalized_path) const {
  const std::size_t q = normalized_path.find_first_of("?#");
  if (q != std::string_view::npos) normalized_path = normalized_path.substr(0, q);
  const std::vector<std::string_view> segments = split_path(normalized_path);
  for (const rule& r : rules_) {
    bool match = true;
    std::size_t i = 0;
    for (; i < r.segments.size(); ++i) {
      const std::string& pat = r.segments[i];
      if (pat == "**") break;  // swallows the rest, including nothing
      if (i >= segments.size()) {
        match = false;
        break;
      }
      const bool placeholder = pat.front() == '{';
      if (!placeholder && pat != segments[i]) {
        match = false;
        break;
      }
    }
    if (!match) continue;
    const bool tail = !r.segments.empty() && r.segments.back() == "**";
    if (!tail && segments.size() != r.segments.size()) continue;
    if (!r.scope.empty()) {
      if (r.methods.empty() || std::find(r.methods.begin(), r.methods.end(), method) != r.methods.end()) {
        return r.scope;
      }
      continue;
    }
    const std::string& s = is_read_method(method) ? r.read : r.write;
    if (!s.empty()) return s;
  }
  return std::nullopt;
}

bool scope_table::satisfied_by(const std::vector<std::string>& granted, std::string_view required) const {
  if (std::find(granted.begin(), granted.end(), required) != granted.end()) return true;
  // okta.users.read is covered by okta.users.manage; okta.users.read.self by
  // okta.users.manage.self.
  if (!manage_implies_read_) return false;
  const std::size_t pos = required.find(".read");
  if (pos == std::string_view::npos) return false;
  if (pos + 5 != required.size() && required[pos + 5] != '.') return false;
  std::string manage(required);
  manage.replace(pos, 5, ".manage");
  return std::find(granted.begin(), granted.end(), manage) != granted.end();
}

}  // namespace okta_sidecar::auth
