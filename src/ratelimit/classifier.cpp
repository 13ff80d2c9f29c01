#include "okta_sidecar/ratelimit/classifier.hpp"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "okta_sidecar/embedded_buckets_json.hpp"
#include "okta_sidecar/ratelimit/path.hpp"

namespace okta_sidecar::ratelimit {
namespace {

using json = nlohmann::json;

// Deepest pattern the table may hold; paths may be deeper (only "/*" patterns can match them).
constexpr std::size_t max_segments = 24;
constexpr std::size_t third = 2;  // the segment the candidate index keys on (classifier.hpp)

// Methods a table may name (RFC 9110 §9.3 plus PATCH, RFC 5789). Anything else a client sends
// maps to `other_method_bit`, which only "*" matches.
constexpr std::array<std::string_view, 9> method_names = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
                                                          "PATCH", "OPTIONS", "TRACE", "CONNECT"};
constexpr std::uint32_t other_method_bit = 1u << method_names.size();
constexpr std::uint32_t get_bit = 1u << 0;
constexpr std::uint32_t head_bit = 1u << 1;

// Method names are case-sensitive (RFC 9110 §9.1): "get" is not GET.
std::uint32_t method_bit(std::string_view method) {
  for (std::size_t i = 0; i < method_names.size(); ++i)
    if (method_names[i] == method) return 1u << i;
  return other_method_bit;
}

[[noreturn]] void fail(std::string_view source, const std::string& where, const std::string& what) {
  throw std::runtime_error(std::string(source) + ": " + where + ": " + what);
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Literal pattern segments are compared with normalised paths, so they must already be in
// normal form: no dot segments, no percent-encoding, nothing that ends a path.
bool valid_literal(std::string_view s) {
  if (s == "." || s == "..") return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return c == '%' || c == '?' || c == '#' || c == '{' || c == '}' || c == '*' ||
           static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
  });
}

// FNV-1a: a cheap per-segment fingerprint so that rejecting a row costs integer compares.
std::uint64_t segment_hash(std::string_view s) {
  std::uint64_t h = 14695981039346656037ull;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

struct split_path {
  std::array<std::string_view, max_segments> segments{};
  std::array<std::uint64_t, max_segments> hashes{};
  std::size_t count = 0;  // real number of segments, may exceed max_segments
};

split_path split(std::string_view path) {
  split_path out;
  std::size_t pos = 1;  // normalised paths start with "/" and have no empty segments
  while (pos < path.size()) {
    auto slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    if (out.count < max_segments) {
      out.segments[out.count] = path.substr(pos, slash - pos);
      out.hashes[out.count] = segment_hash(out.segments[out.count]);
    }
    ++out.count;
    pos = slash + 1;
  }
  return out;
}

}  // namespace

// Lets file-local helpers reach the private nested types without widening the public API.
struct classifier_access {
  using group = classifier::group;
  using rule = classifier::rule;
  using segment = classifier::segment;
  using bucket_piece = classifier::bucket_piece;

  static rule parse_rule(const json& j, std::string_view source, const std::string& where,
                         const std::string& group_name) {
    if (!j.is_object()) fail(source, where, "must be an object");
    rule r;
    for (const auto& [key, value] : j.items()) {
      if (key != "path" && key != "methods" && key != "bucket" && key != "note")
        fail(source, where + "." + key, "unknown key (expected path, methods, bucket, note)");
    }
    // path
    if (!j.contains("path") || !j["path"].is_string())
      fail(source, where + ".path", "required, must be a string such as \"/api/v1/users/{id}\"");
    r.path = j["path"].get<std::string>();
    const std::string pwhere = where + ".path \"" + r.path + "\"";
    if (r.path.empty() || r.path.front() != '/') fail(source, pwhere, "must start with '/'");
    if (r.path != "/") {
      std::string_view rest = std::string_view(r.path).substr(1);
      while (true) {
        const auto slash = rest.find('/');
        const auto seg = rest.substr(0, slash);
        const bool last = slash == std::string_view::npos;
        if (seg.empty()) fail(source, pwhere, "empty segment (\"//\" or a trailing '/')");
        if (seg == "*") {
          if (!last) fail(source, pwhere, "'*' may only be the last segment");
          r.prefix = true;
        } else if (seg.front() == '{') {
          if (seg.size() < 3 || seg.back() != '}' ||
              !std::all_of(seg.begin() + 1, seg.end() - 1, is_name_char))
            fail(source, pwhere,
                 "bad parameter \"" + std::string(seg) + "\" (want {name} with letters, digits, _)");
          const std::string name(seg.substr(1, seg.size() - 2));
          for (const auto& s : r.segments)
            if (s.k == segment::kind::param && s.text == name)
              fail(source, pwhere, "parameter {" + name + "} appears twice");
          r.segments.push_back({segment::kind::param, name, 0});
        } else {
          if (!valid_literal(seg))
            fail(source, pwhere, "segment \"" + std::string(seg) + "\" is not a normalised path segment");
          r.segments.push_back({segment::kind::literal, std::string(seg), segment_hash(seg)});
        }
        if (last) break;
        rest.remove_prefix(slash + 1);
      }
    }
    if (r.segments.size() > max_segments)
      fail(source, pwhere, "more than " + std::to_string(max_segments) + " segments");
    // methods
    if (!j.contains("methods"))
      fail(source, where + ".methods", "required: \"*\" or a list such as [\"GET\", \"POST\"]");
    const auto& m = j["methods"];
    if (m.is_string() && m.get<std::string>() == "*") {
      r.any_method = true;
    } else if (m.is_array() && !m.empty()) {
      for (const auto& name : m) {
        if (!name.is_string()) fail(source, where + ".methods", "entries must be strings");
        const auto s = name.get<std::string>();
        const auto bit = method_bit(s);
        if (bit == other_method_bit)
          fail(source, where + ".methods", "unknown method \"" + s + "\" (upper-case, e.g. GET)");
        r.methods |= bit;
      }
      // HEAD is answered by the GET resource (JAX-RS, which Okta's API runs on), so it
      // counts where GET counts.
      if (r.methods & get_bit) r.methods |= head_bit;
    } else {
      fail(source, where + ".methods", "must be \"*\" or a non-empty list of method names");
    }
    // bucket template
    std::string tmpl = group_name;
    if (j.contains("bucket")) {
      if (!j["bucket"].is_string() || j["bucket"].get<std::string>().empty())
        fail(source, where + ".bucket", "must be a non-empty string");
      tmpl = j["bucket"].get<std::string>();
    }
    std::string_view t = tmpl;
    while (!t.empty()) {
      const auto open = t.find('{');
      if (open != 0) {
        const auto lit = t.substr(0, open);
        if (lit.find('}') != std::string_view::npos)
          fail(source, where + ".bucket", "unbalanced '}' in \"" + tmpl + "\"");
        r.bucket.push_back({std::string(lit), -1});
        if (open == std::string_view::npos) break;
        t.remove_prefix(open);
        continue;
      }
      const auto close = t.find('}');
      if (close == std::string_view::npos)
        fail(source, where + ".bucket", "unbalanced '{' in \"" + tmpl + "\"");
      const std::string name(t.substr(1, close - 1));
      int index = -1;
      for (std::size_t i = 0; i < r.segments.size(); ++i)
        if (r.segments[i].k == segment::kind::param && r.segments[i].text == name)
          index = static_cast<int>(i);
      if (index < 0)
        fail(source, where + ".bucket", "{" + name + "} is not a parameter of the path " + r.path);
      r.bucket.push_back({{}, index});
      t.remove_prefix(close + 1);
    }
    return r;
  }

  static group parse_group(const json& j, std::string_view source, std::size_t index) {
    std::string where = "groups[" + std::to_string(index) + "]";
    if (!j.is_object()) fail(source, where, "must be an object");
    if (!j.contains("name") || !j["name"].is_string())
      fail(source, where + ".name", "required, must be a string");
    group g;
    g.name = j["name"].get<std::string>();
    where += " \"" + g.name + "\"";
    if (g.name.empty() || !std::all_of(g.name.begin(), g.name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        }))
      fail(source, where + ".name", "must be non-empty lower-case letters, digits, '-', '_' or '.'");
    for (const auto& [key, value] : j.items()) {
      if (key == "name" || key == "note" || key == "match") continue;
      if (key == "rate_limited" || key == "per_principal") {
        if (!value.is_boolean()) fail(source, where + "." + key, "must be true or false");
        (key == "rate_limited" ? g.rate_limited : g.per_principal) = value.get<bool>();
      } else if (key == "capacity_percent") {
        if (!value.is_number_integer() || value.get<std::int64_t>() < 1 || value.get<std::int64_t>() > 100)
          fail(source, where + ".capacity_percent",
               "must be an integer from 1 to 100 (the share of the bucket's limit this sidecar may use)");
        g.capacity_percent = value.get<std::uint32_t>();
      } else if (key == "typical_limit") {
        if (!value.is_number_integer() || value.get<std::int64_t>() <= 0)
          fail(source, where + ".typical_limit", "must be a positive integer (requests per minute)");
        g.typical_limit = value.get<std::int64_t>();
      } else {
        fail(source, where + "." + key,
             "unknown key (expected name, match, rate_limited, per_principal, typical_limit, "
             "capacity_percent, "
             "note)");
      }
    }
    if (j.contains("note") && !j["note"].is_string()) fail(source, where + ".note", "must be a string");
    if (!j.contains("match") || !j["match"].is_array() || j["match"].empty())
      fail(source, where + ".match", "required, must be a non-empty list of {path, methods}");
    for (std::size_t i = 0; i < j["match"].size(); ++i)
      g.rules.push_back(
          parse_rule(j["match"][i], source, where + ".match[" + std::to_string(i) + "]", g.name));
    return g;
  }

  // Same shape: the two patterns match exactly the same paths.
  static bool same_shape(const rule& a, const rule& b) {
    if (a.prefix != b.prefix || a.segments.size() != b.segments.size()) return false;
    for (std::size_t i = 0; i < a.segments.size(); ++i) {
      if (a.segments[i].k != b.segments[i].k) return false;
      if (a.segments[i].k == segment::kind::literal && a.segments[i].text != b.segments[i].text) return false;
    }
    return true;
  }
};

bool classifier::more_specific(const group& ga, const rule& a, const group& gb, const rule& b) {
  // Rank per position: literal 3 > {param} 2 > end of an exact pattern 1 > "/*" 0. Two
  // patterns that both match a path differ first where one has a literal and the other a
  // parameter or "*", or where one ends and the other continues with "*"; comparing these
  // ranks lexicographically is "exact first, then the longest, most specific prefix".
  const auto rank = [](const rule& r, std::size_t i) {
    if (i < r.segments.size()) return r.segments[i].k == segment::kind::literal ? 3 : 2;
    return r.prefix ? 0 : 1;
  };
  const std::size_t n = std::max(a.segments.size(), b.segments.size()) + 1;
  for (std::size_t i = 0; i < n; ++i) {
    const int ra = rank(a, i), rb = rank(b, i);
    if (ra != rb) return ra > rb;
    if (ra < 2) break;  // both ended here
  }
  if (ga.layer != gb.layer) return ga.layer > gb.layer;    // overrides win ties
  if (a.any_method != b.any_method) return !a.any_method;  // a method list beats "*"
  return false;
}

classifier::classifier() { rebuild_order(); }  // the index exists for every classifier

void classifier::rebuild_order() {
  order_.clear();
  hashes_.clear();
  for (std::uint32_t g = 0; g < groups_.size(); ++g)
    for (std::uint32_t r = 0; r < groups_[g].rules.size(); ++r) order_.push_back({g, r});
  std::stable_sort(order_.begin(), order_.end(), [this](const ranked& x, const ranked& y) {
    const auto& gx = groups_[x.group_index];
    const auto& gy = groups_[y.group_index];
    return more_specific(gx, gx.rules[x.rule_index], gy, gy.rules[y.rule_index]);
  });
  for (auto& o : order_) {
    const rule& r = groups_[o.group_index].rules[o.rule_index];
    o.methods = r.any_method ? ~0u : r.methods;
    o.prefix = r.prefix;
    o.segment_count = static_cast<std::uint16_t>(r.segments.size());
    o.hash_begin = static_cast<std::uint32_t>(hashes_.size());
    for (std::size_t i = 0; i < r.segments.size(); ++i) {
      if (r.segments[i].k == segment::kind::param) o.param_mask |= 1u << i;
      hashes_.push_back(r.segments[i].hash);
    }
  }
  const auto literal_third = [](const ranked& o) {
    return o.segment_count > third && ((o.param_mask >> third) & 1u) == 0;
  };
  by_count_.assign(max_segments + 2, {});
  for (std::size_t n = 0; n < by_count_.size(); ++n) {
    auto& c = by_count_[n];
    std::vector<std::uint32_t> rows;
    for (std::uint32_t i = 0; i < order_.size(); ++i)
      if (order_[i].prefix ? n >= order_[i].segment_count : n == order_[i].segment_count) rows.push_back(i);
    for (const std::uint32_t i : rows)
      if (literal_third(order_[i])) c.by_third.try_emplace(hashes_[order_[i].hash_begin + third]);
    for (const std::uint32_t i : rows) {
      if (!literal_third(order_[i])) {
        c.others.push_back(i);
        for (auto& [h, list] : c.by_third) list.push_back(i);
      } else {
        c.by_third[hashes_[order_[i].hash_begin + third]].push_back(i);
      }
    }
  }
}

classifier classifier::from_json(std::string_view json_text, std::string_view source) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::parse_error& e) {
    fail(source, "JSON", e.what());
  }
  if (!doc.is_object()) fail(source, "top level", "must be an object with a \"groups\" list");
  for (const auto& [key, value] : doc.items())
    if (key != "version" && key != "note" && key != "groups")
      fail(source, key, "unknown key (expected version, note, groups)");
  if (doc.contains("version") && doc["version"] != 1)
    fail(source, "version", "unsupported (this build reads version 1)");
  if (!doc.contains("groups") || !doc["groups"].is_array())
    fail(source, "groups", "required, must be a list");

  classifier c;
  const auto& groups = doc["groups"];
  for (std::size_t i = 0; i < groups.size(); ++i) {
    auto g = classifier_access::parse_group(groups[i], source, i);
    for (const auto& other : c.groups_)
      if (other.name == g.name)
        fail(source, "groups[" + std::to_string(i) + "]", "duplicate group name \"" + g.name + "\"");
    c.groups_.push_back(std::move(g));
  }
  // Within one table two matches of the same shape whose method sets overlap would make the
  // answer depend on file order: refuse, naming both.
  for (std::size_t g1 = 0; g1 < c.groups_.size(); ++g1)
    for (std::size_t r1 = 0; r1 < c.groups_[g1].rules.size(); ++r1)
      for (std::size_t g2 = g1; g2 < c.groups_.size(); ++g2)
        for (std::size_t r2 = (g2 == g1 ? r1 + 1 : 0); r2 < c.groups_[g2].rules.size(); ++r2) {
          const auto& a = c.groups_[g1].rules[r1];
          const auto& b = c.groups_[g2].rules[r2];
          const bool overlap = (a.any_method && b.any_method) || (a.methods & b.methods) != 0;
          if (overlap && classifier_access::same_shape(a, b))
            fail(source, "groups \"" + c.groups_[g1].name + "\" and \"" + c.groups_[g2].name + "\"",
                 "both match the same methods on " + a.path + " and " + b.path);
        }
  c.rebuild_order();
  return c;
}

classifier classifier::builtin() {
  return from_json(okta_sidecar::embedded_buckets_json, "built-in okta-buckets.json");
}

void classifier::merge(const classifier& overrides) {
  int top = 0;
  for (const auto& g : groups_) top = std::max(top, g.layer);
  for (auto g : overrides.groups_) {
    g.layer = top + 1 + g.layer;
    const auto same =
        std::find_if(groups_.begin(), groups_.end(), [&](const group& x) { return x.name == g.name; });
    if (same != groups_.end()) {
      *same = std::move(g);
    } else {
      groups_.push_back(std::move(g));
    }
  }
  rebuild_order();
}

classification classifier::classify(std::string_view method, std::string_view target) const {
  std::string storage;
  return classify_normal(method, normal_path(target, storage));
}

classification classifier::classify_normal(std::string_view method, std::string_view path) const {
  const split_path p = split(path);
  const std::uint32_t bit = method_bit(method);

  const auto& c = by_count_[std::min(p.count, by_count_.size() - 1)];
  const auto it = p.count > third ? c.by_third.find(p.hashes[third]) : c.by_third.end();
  for (const std::uint32_t row : it != c.by_third.end() ? it->second : c.others) {
    const ranked& o = order_[row];
    if ((o.methods & bit) == 0) continue;
    bool ok = true;
    for (std::size_t i = 0; i < o.segment_count && ok; ++i)
      ok = ((o.param_mask >> i) & 1u) != 0 || hashes_[o.hash_begin + i] == p.hashes[i];
    if (!ok) continue;
    const group& g = groups_[o.group_index];
    const rule& r = g.rules[o.rule_index];
    for (std::size_t i = 0; i < r.segments.size() && ok; ++i)  // rule out hash collisions
      ok = r.segments[i].k == segment::kind::param || r.segments[i].text == p.segments[i];
    if (!ok) continue;

    classification c;
    c.group = g.name;
    c.rate_limited = g.rate_limited;
    c.per_principal = g.per_principal;
    c.capacity_percent = g.capacity_percent;
    std::size_t size = 0;
    for (const auto& piece : r.bucket)
      size += piece.param_segment < 0 ? piece.literal.size()
                                      : p.segments[static_cast<std::size_t>(piece.param_segment)].size();
    c.bucket.reserve(size);
    for (const auto& piece : r.bucket) {
      if (piece.param_segment < 0) {
        c.bucket += piece.literal;
      } else {
        c.bucket += p.segments[static_cast<std::size_t>(piece.param_segment)];
        c.instance = true;
      }
    }
    return c;
  }
  return classification{"default", "default", true, false, false, std::nullopt};
}

std::vector<std::string> classifier::literal_buckets() const {
  std::vector<std::string> out;
  for (const auto& g : groups_) {
    out.push_back(g.name);
    for (const auto& r : g.rules) {
      std::string name;
      bool literal = true;
      for (const auto& piece : r.bucket) {
        if (piece.param_segment >= 0) literal = false;
        name += piece.literal;
      }
      if (literal && !name.empty()) out.push_back(std::move(name));
    }
  }
  return out;
}

std::vector<std::string> classifier::groups() const {
  std::vector<std::string> names;
  names.reserve(groups_.size());
  for (const auto& g : groups_) names.push_back(g.name);
  return names;
}

std::optional<std::int64_t> classifier::typical_limit(std::string_view name) const {
  for (const auto& g : groups_)
    if (g.name == name) return g.typical_limit;
  return std::nullopt;
}

}  // namespace okta_sidecar::ratelimit
