#include "okta_sidecar/config/loader.hpp"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>

#include "okta_sidecar/http/ip_literal.hpp"

namespace okta_sidecar::config {
namespace {

using json = nlohmann::json;

bool is_plain_key(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// "upstream" + "resolve" -> "upstream.resolve"; keys that are not identifiers (resolve's
// "host:port" keys) are written as ["..."] so the path stays unambiguous.
std::string child_path(const std::string& path, std::string_view key) {
  if (!is_plain_key(key)) return path + "[" + json(std::string(key)).dump() + "]";
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string index_path(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string quote_json(std::string_view s) { return json(std::string(s)).dump(); }

// How a wrong value is shown back to the user: short, and never a whole object.
std::string describe(const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      if (s.size() > 60) return quote_json(s.substr(0, 57) + "...");
      return quote_json(s);
    }
    default:
      return j.dump();
  }
}

std::string normal_key(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '-') c = '_';
  }
  return out;
}

// Checks JSON syntax and finds duplicate keys, which nlohmann::json would otherwise resolve
// silently to the last value (RFC 8259 section 4 leaves duplicates undefined).
class syntax_checker final : public nlohmann::json_sax<json> {
 public:
  syntax_checker(std::string_view text, std::string_view source, std::vector<std::string>& errors)
      : text_(text), source_(source), errors_(errors) {}

  bool null() override { return scalar(); }
  bool boolean(bool) override { return scalar(); }
  bool number_integer(number_integer_t) override { return scalar(); }
  bool number_unsigned(number_unsigned_t) override { return scalar(); }
  bool number_float(number_float_t, const string_t&) override { return scalar(); }
  bool string(string_t&) override { return scalar(); }
  bool binary(binary_t&) override { return scalar(); }
  bool start_object(std::size_t) override {
    begin_value();
    stack_.push_back({true, {}, {}, 0, 0});
    return true;
  }
  bool key(string_t& k) override {
    frame& f = stack_.back();
    f.key = k;
    if (!f.keys.insert(k).second) {
      errors_.push_back(path() + ": duplicate key (only one value would take effect)");
    }
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    begin_value();
    stack_.push_back({false, {}, {}, 0, 0});
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string& last_token,
                   const nlohmann::detail::exception& ex) override {
    // nlohmann's message reads "[json.exception.parse_error.101] parse error at line 3,
    // column 5: <detail>"; keep the detail and give the position in compiler style.
    std::string what = ex.what();
    std::string detail = what;
    auto col = what.find("column ");
    if (col != std::string::npos) {
      auto colon = what.find(": ", col);
      if (colon != std::string::npos) detail = what.substr(colon + 2);
    } else if (auto colon = what.find("] "); colon != std::string::npos) {
      detail = what.substr(colon + 2);
    }
    // `position` counts characters read, the offending one (or end of input) included.
    const std::size_t offset = std::min(position > 0 ? position - 1 : 0, text_.size());
    std::size_t line = 1, line_start = 0;
    for (std::size_t i = 0; i < offset; ++i) {
      if (text_[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    const std::size_t column = offset - line_start + 1;
    std::string msg = std::string(source_) + ":" + std::to_string(line) + ":" + std::to_string(column) +
                      ": invalid JSON (byte " + std::to_string(offset) + "): " + detail;
    if (last_token.ends_with("/") || (offset < text_.size() && text_[offset] == '/')) {
      msg += " (JSON does not allow comments)";
    }
    errors_.push_back(std::move(msg));
    return false;
  }

 private:
  struct frame {
    bool object;
    std::set<std::string> keys;
    std::string key;
    std::size_t next_index;
    std::size_t index;
  };

  bool scalar() {
    begin_value();
    return true;
  }
  void begin_value() {
    if (!stack_.empty() && !stack_.back().object) stack_.back().index = stack_.back().next_index++;
  }
  std::string path() const {
    std::string p;
    for (const frame& f : stack_) p = f.object ? child_path(p, f.key) : index_path(p, f.index);
    return p;
  }

  std::string_view text_;
  std::string_view source_;
  std::vector<std::string>& errors_;
  std::vector<frame> stack_;
};

// Reads typed values out of the document, recording an error per bad key and leaving the
// target untouched so one mistake does not hide the next.
class reader {
 public:
  explicit reader(std::vector<std::string>& errors) : errors_(errors) {}

  void error(const std::string& path, const std::string& problem) {
    errors_.push_back(path + ": " + problem);
  }

  template <class T>
  void read_uint(const json& j, const std::string& path, T& out) {
    constexpr std::uint64_t max = std::numeric_limits<T>::max();
    if (j.is_number_unsigned()) {
      auto v = j.get<std::uint64_t>();
      if (v > max) {
        error(path, "must be at most " + std::to_string(max) + ", got " + j.dump());
        return;
      }
      out = static_cast<T>(v);
      return;
    }
    error(path, "expected a non-negative integer, got " + describe(j));
  }

  void read(const json& j, const std::string& path, std::uint16_t& out) { read_uint(j, path, out); }
  void read(const json& j, const std::string& path, std::uint32_t& out) { read_uint(j, path, out); }
  void read(const json& j, const std::string& path, std::uint64_t& out) { read_uint(j, path, out); }

  void read(const json& j, const std::string& path, double& out) {
    if (!j.is_number()) return error(path, "expected a number, got " + describe(j));
    out = j.get<double>();
  }

  void read(const json& j, const std::string& path, bool& out) {
    if (!j.is_boolean()) return error(path, "expected true or false, got " + describe(j));
    out = j.get<bool>();
  }

  void read(const json& j, const std::string& path, std::string& out) {
    if (!j.is_string()) return error(path, "expected a string, got " + describe(j));
    out = j.get<std::string>();
  }

  void read(const json& j, const std::string& path, std::optional<std::string>& out) {
    if (j.is_null()) {
      out.reset();
      return;
    }
    if (!j.is_string()) return error(path, "expected a string or null, got " + describe(j));
    out = j.get<std::string>();
  }

  void read(const json& j, const std::string& path, endpoint& out) {
    if (!j.is_string()) {
      return error(path, "expected a \"HOST:PORT\" string, got " + describe(j));
    }
    const auto& text = j.get_ref<const std::string&>();
    auto ep = explain_endpoint(text);
    if (!ep) return error(path, describe(j) + " " + ep.error);
    out = *ep.value;
  }

  void read(const json& j, const std::string& path, std::vector<std::string>& out) {
    if (!j.is_array()) return error(path, "expected an array of strings, got " + describe(j));
    std::vector<std::string> v;
    bool ok = true;
    for (std::size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string()) {
        error(index_path(path, i), "expected a string, got " + describe(j[i]));
        ok = false;
        continue;
      }
      v.push_back(j[i].get<std::string>());
    }
    if (ok) out = std::move(v);
  }

  void read(const json& j, const std::string& path, std::vector<std::uint16_t>& out) {
    if (!j.is_array()) return error(path, "expected an array of port numbers, got " + describe(j));
    std::vector<std::uint16_t> v(j.size());
    const std::size_t before = errors_.size();
    for (std::size_t i = 0; i < j.size(); ++i) read(j[i], index_path(path, i), v[i]);
    if (errors_.size() == before) out = std::move(v);
  }

  void read(const json& j, const std::string& path, std::map<std::string, endpoint>& out) {
    if (!j.is_object()) {
      return error(path, "expected an object mapping \"host:port\" to \"address:port\", got " + describe(j));
    }
    std::map<std::string, endpoint> m;
    const std::size_t before = errors_.size();
    for (const auto& [k, v] : j.items()) read(v, child_path(path, k), m[k]);
    if (errors_.size() == before) out = std::move(m);
  }

 private:
  std::vector<std::string>& errors_;
};

// One JSON object of the file: each known key is visited once through field(); finish()
// reports the keys nobody asked for, with the closest known one as a suggestion.
class object_reader {
 public:
  object_reader(reader& r, const json& obj, std::string path) : r_(r), obj_(obj), path_(std::move(path)) {}

  template <class F>
  void field(std::string_view key, F&& apply) {
    known_.push_back(key);
    auto it = obj_.find(std::string(key));
    if (it != obj_.end()) apply(*it, child_path(path_, key));
  }

  template <class T>
  void value(std::string_view key, T& target) {
    field(key, [&](const json& j, const std::string& p) { r_.read(j, p, target); });
  }

  void finish() {
    for (const auto& [k, v] : obj_.items()) {
      if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
      r_.error(child_path(path_, k), "unknown key " + suggestion(k));
    }
  }

 private:
  std::string suggestion(const std::string& key) const {
    if (auto near = closest_match(key, known_)) return "(did you mean " + quote_json(*near) + "?)";
    // The right key in the wrong section ("max_wait_ms" at the top level).
    const std::string want = normal_key(key);
    for (const std::string& p : known_key_paths()) {
      auto dot = p.rfind('.');
      std::string leaf = dot == std::string::npos ? p : p.substr(dot + 1);
      std::string parent = dot == std::string::npos ? std::string{} : p.substr(0, dot);
      if (normal_key(leaf) == want && parent != path_) {
        return "(did you mean " + quote_json(p) + "?)";
      }
    }
    std::string list;
    for (std::string_view k : known_) list += (list.empty() ? "" : ", ") + std::string(k);
    return "(known keys here: " + list + ")";
  }

  reader& r_;
  const json& obj_;
  std::string path_;
  std::vector<std::string_view> known_;
};

// Runs `body` on a section that must be an object.
template <class F>
void section(reader& r, object_reader& parent, std::string_view key, F&& body) {
  parent.field(key, [&](const json& j, const std::string& path) {
    if (!j.is_object()) return r.error(path, "expected an object, got " + describe(j));
    object_reader o(r, j, path);
    body(o);
    o.finish();
  });
}

void apply_document(const json& doc, reader& r, config& c) {
  object_reader top(r, doc, "");
  top.value("listen", c.listen);
  top.value("admin_listen", c.admin_listen);
  top.value("state_dir", c.state_dir);
  top.value("threads", c.threads);
  top.value("intercept_hosts", c.intercept_hosts);
  top.value("tunnel_hosts", c.tunnel_hosts);
  section(r, top, "ca", [&](object_reader& o) {
    // null (or "") keeps the file derived from state_dir, as finalize() fills it.
    auto path_or_derived = [&](std::string& target) {
      return [&](const json& j, const std::string& p) {
        if (j.is_null()) {
          target.clear();
        } else if (j.is_string()) {
          target = j.get<std::string>();
        } else {
          r.error(p, "expected a file path or null, got " + describe(j));
        }
      };
    };
    o.field("cert_file", path_or_derived(c.ca.cert_file));
    o.field("key_file", path_or_derived(c.ca.key_file));
    o.value("create_if_missing", c.ca.create_if_missing);
  });
  section(r, top, "upstream", [&](object_reader& o) {
    o.value("trust_file", c.upstream.trust_file);
    o.value("resolve", c.upstream.resolve);
    o.value("connect_timeout_ms", c.upstream.connect_timeout_ms);
    o.value("tls_handshake_timeout_ms", c.upstream.tls_handshake_timeout_ms);
    o.value("response_timeout_ms", c.upstream.response_timeout_ms);
    o.value("idle_timeout_ms", c.upstream.idle_timeout_ms);
    o.value("max_connections_per_host", c.upstream.max_connections_per_host);
    o.value("insecure_skip_verify", c.upstream.insecure_skip_verify);
  });
  section(r, top, "rate_limit", [&](object_reader& o) {
    o.value("max_wait_ms", c.rate_limit.max_wait_ms);
    o.value("max_queue", c.rate_limit.max_queue);
    o.value("max_queue_total", c.rate_limit.max_queue_total);
    o.value("max_auth_servers_per_host", c.rate_limit.max_auth_servers_per_host);
    o.value("max_concurrency", c.rate_limit.max_concurrency);
    o.value("initial_concurrency", c.rate_limit.initial_concurrency);
    o.value("coalesce", c.rate_limit.coalesce);
    o.value("capacity_percent", c.rate_limit.capacity_percent);
    o.value("reserve_fraction", c.rate_limit.reserve_fraction);
    o.value("buckets_file", c.rate_limit.buckets_file);
    o.value("interactive_paths", c.rate_limit.interactive_paths);
  });
  section(r, top, "cache", [&](object_reader& o) {
    o.value("enabled", c.cache.enabled);
    o.value("stale_if_error_s", c.cache.stale_if_error_s);
  });
  section(r, top, "circuit_breaker", [&](object_reader& o) {
    o.value("failure_threshold", c.circuit_breaker.failure_threshold);
    o.value("open_ms", c.circuit_breaker.open_ms);
    o.value("max_open_ms", c.circuit_breaker.max_open_ms);
    o.value("half_open_probes", c.circuit_breaker.half_open_probes);
  });
  section(r, top, "retry", [&](object_reader& o) {
    o.value("max_attempts", c.retry.max_attempts);
    o.value("base_backoff_ms", c.retry.base_backoff_ms);
    o.value("max_backoff_ms", c.retry.max_backoff_ms);
    o.value("budget_fraction", c.retry.budget_fraction);
    o.value("on_timeout", c.retry.on_timeout);
  });
  section(r, top, "auth",
          [&](object_reader& o) { o.value("reject_expired_locally", c.auth.reject_expired_locally); });
  top.field("fleet", [&](const json& j, const std::string& path) {
    if (j.is_null()) {
      c.fleet.reset();
      return;
    }
    if (!j.is_object()) {
      return r.error(path, "expected null (local mode) or an object with \"redis\", got " + describe(j));
    }
    fleet_config f = c.fleet.value_or(fleet_config{});
    object_reader o(r, j, path);
    o.value("redis", f.redis);
    o.value("key_prefix", f.key_prefix);
    o.value("lease_size", f.lease_size);
    o.value("timeout_ms", f.timeout_ms);
    o.value("expected_replicas", f.expected_replicas);
    o.value("fallback_share", f.fallback_share);
    o.finish();
    c.fleet = std::move(f);
  });
  section(r, top, "log", [&](object_reader& o) {
    o.value("level", c.log.level);
    o.value("format", c.log.format);
    o.value("access_sample", c.log.access_sample);
  });
  section(r, top, "client", [&](object_reader& o) {
    o.value("header_timeout_ms", c.client.header_timeout_ms);
    o.value("idle_timeout_ms", c.client.idle_timeout_ms);
    o.value("request_timeout_ms", c.client.request_timeout_ms);
    o.value("drain_timeout_ms", c.client.drain_timeout_ms);
    o.value("max_header_bytes", c.client.max_header_bytes);
    o.value("max_header_count", c.client.max_header_count);
    o.value("max_body_bytes", c.client.max_body_bytes);
    o.value("max_buffered_body_bytes", c.client.max_buffered_body_bytes);
    o.value("max_connections", c.client.max_connections);
  });
  section(r, top, "access", [&](object_reader& o) {
    o.value("proxy_auth_file", c.access.proxy_auth_file);
    o.value("proxy_auth_env", c.access.proxy_auth_env);
    o.value("allowed_clients", c.access.allowed_clients);
    o.value("allowed_ports", c.access.allowed_ports);
    o.value("allow_private_destinations", c.access.allow_private_destinations);
    o.value("allow_cleartext", c.access.allow_cleartext);
  });
  section(r, top, "admin", [&](object_reader& o) {
    o.value("expose_status", c.admin.expose_status);
    o.value("allowed_hosts", c.admin.allowed_hosts);
  });
  top.finish();
}

// ---- validation helpers ----

class checker {
 public:
  void error(const std::string& path, const std::string& problem) {
    errors_.push_back(path + ": " + problem);
  }
  void at_least(const std::string& path, std::uint64_t v, std::uint64_t min, std::string_view why = {}) {
    if (v < min) {
      error(path, "must be at least " + std::to_string(min) + ", got " + std::to_string(v) +
                      (why.empty() ? "" : " (" + std::string(why) + ")"));
    }
  }
  void at_most(const std::string& path, std::uint64_t v, std::uint64_t max, std::string_view why = {}) {
    if (v > max) {
      error(path, "must be at most " + std::to_string(max) + ", got " + std::to_string(v) +
                      (why.empty() ? "" : " (" + std::string(why) + ")"));
    }
  }
  void positive_ms(const std::string& path, std::uint64_t v) {
    if (v == 0) error(path, "must be greater than 0 (a timeout of 0 would fail every operation)");
  }
  void non_empty_if_set(const std::string& path, const std::optional<std::string>& v) {
    if (v && v->empty()) error(path, "must not be empty (use null for the default)");
  }
  void one_of(const std::string& path, const std::string& v,
              std::initializer_list<std::string_view> allowed) {
    if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return;
    std::string list;
    for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    std::string msg = quote_json(v) + " is not one of " + list;
    std::vector<std::string_view> candidates(allowed);
    if (auto near = closest_match(v, candidates)) msg += " (did you mean " + quote_json(*near) + "?)";
    error(path, msg);
  }
  void host(const std::string& path, const endpoint& ep) {
    if (ep.host.find(':') != std::string::npos ? !http::parse_ipv6(ep.host).has_value()
                                               : !is_host_name_or_ipv4(ep.host)) {
      error(path, "host " + quote_json(ep.host) + " is not a valid host name or IP address");
    }
  }
  std::vector<std::string> take() { return std::move(errors_); }

 private:
  std::vector<std::string> errors_;
};

bool is_wildcard_address(const std::string& host) {
  return host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0";
}

bool is_env_name(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

void check_host_list(checker& ck, const std::string& name, const std::vector<std::string>& list,
                     std::vector<policy::host_pattern>& out) {
  for (std::size_t i = 0; i < list.size(); ++i) {
    auto p = explain_host_pattern(list[i]);
    if (!p) {
      ck.error(index_path(name, i), quote_json(list[i]) + " " + p.error);
      continue;
    }
    out.push_back(*p.value);
  }
}

}  // namespace

parse_result parse_config(std::string_view json_text, std::string_view source_name, config base) {
  parse_result result{std::move(base), {}};
  syntax_checker sax(json_text, source_name, result.errors);
  if (!json::sax_parse(json_text, &sax)) return result;
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    result.errors.push_back(std::string(source_name) +
                            ": the configuration must be a JSON object ({...}), got " + describe(doc));
    return result;
  }
  reader r(result.errors);
  apply_document(doc, r, result.cfg);
  return result;
}

void finalize(config& cfg) {
  auto in_state_dir = [&](std::string_view file) {
    if (cfg.state_dir.empty() || cfg.state_dir.back() == '/') return cfg.state_dir + std::string(file);
    return cfg.state_dir + "/" + std::string(file);
  };
  if (cfg.ca.cert_file.empty()) cfg.ca.cert_file = in_state_dir("ca.crt");
  if (cfg.ca.key_file.empty()) cfg.ca.key_file = in_state_dir("ca.key");
}

namespace {

// listen/admin_listen, state_dir, threads, the host lists and the CA files.
void check_listeners_and_hosts(checker& ck, const config& c) {
  ck.host("listen", c.listen);
  ck.host("admin_listen", c.admin_listen);
  // Port 0 asks the kernel for a free port, so two port-0 listeners never collide.
  if (c.listen.port != 0 && c.listen.port == c.admin_listen.port &&
      (c.listen.host == c.admin_listen.host || is_wildcard_address(c.listen.host) ||
       is_wildcard_address(c.admin_listen.host))) {
    ck.error("admin_listen", quote_json(c.admin_listen.to_string()) + " collides with listen " +
                                 quote_json(c.listen.to_string()) + "; give them different ports");
  }
  if (c.state_dir.empty()) ck.error("state_dir", "must not be empty");
  ck.at_most("threads", c.threads, 256, "0 means one per core");

  std::vector<policy::host_pattern> intercept, tunnel;
  check_host_list(ck, "intercept_hosts", c.intercept_hosts, intercept);
  check_host_list(ck, "tunnel_hosts", c.tunnel_hosts, tunnel);
  for (std::size_t i = 0; i < c.tunnel_hosts.size(); ++i) {
    auto p = policy::parse_host_pattern(c.tunnel_hosts[i]);
    if (p && std::find(intercept.begin(), intercept.end(), *p) != intercept.end()) {
      ck.error(index_path("tunnel_hosts", i),
               quote_json(c.tunnel_hosts[i]) +
                   " is also in intercept_hosts; a host is either intercepted or tunnelled");
    }
  }

  if (!c.ca.cert_file.empty() && c.ca.cert_file == c.ca.key_file) {
    ck.error("ca.key_file", "must differ from ca.cert_file (both are " + quote_json(c.ca.cert_file) + ")");
  }
}

// upstream.*
void check_upstream(checker& ck, const config& c) {
  ck.non_empty_if_set("upstream.trust_file", c.upstream.trust_file);
  for (const auto& [from, to] : c.upstream.resolve) {
    const std::string path = child_path("upstream.resolve", from);
    auto key = explain_endpoint(from);
    if (!key) {
      ck.error(path, "the key " + quote_json(from) + " " + key.error);
    } else if (key.value->port == 0) {
      ck.error(path, "the key " + quote_json(from) + " needs a port from 1 to 65535");
    }
    ck.host(path, to);
    if (to.port == 0) ck.error(path, quote_json(to.to_string()) + " needs a port from 1 to 65535");
  }
  ck.positive_ms("upstream.connect_timeout_ms", c.upstream.connect_timeout_ms);
  ck.positive_ms("upstream.tls_handshake_timeout_ms", c.upstream.tls_handshake_timeout_ms);
  ck.positive_ms("upstream.response_timeout_ms", c.upstream.response_timeout_ms);
  ck.positive_ms("upstream.idle_timeout_ms", c.upstream.idle_timeout_ms);
  ck.at_least("upstream.max_connections_per_host", c.upstream.max_connections_per_host, 1);
}

// rate_limit.*
void check_rate_limit(checker& ck, const config& c) {
  ck.at_least("rate_limit.max_concurrency", c.rate_limit.max_concurrency, 1);
  ck.at_least("rate_limit.max_queue_total", c.rate_limit.max_queue_total, 1);
  ck.at_least("rate_limit.max_auth_servers_per_host", c.rate_limit.max_auth_servers_per_host, 1);
  // Above max_concurrency the seed is simply clamped to it (the ceiling always wins).
  ck.at_least("rate_limit.initial_concurrency", c.rate_limit.initial_concurrency, 1);
  ck.at_least("rate_limit.capacity_percent", c.rate_limit.capacity_percent, 1);
  ck.at_most("rate_limit.capacity_percent", c.rate_limit.capacity_percent, 100);
  // A reserve of 1 would hold back the whole budget and no batch request could ever run.
  if (!(c.rate_limit.reserve_fraction >= 0.0 && c.rate_limit.reserve_fraction < 1.0)) {
    ck.error("rate_limit.reserve_fraction",
             "must be at least 0 and less than 1, got " + json(c.rate_limit.reserve_fraction).dump());
  }
  ck.non_empty_if_set("rate_limit.buckets_file", c.rate_limit.buckets_file);
  for (std::size_t i = 0; i < c.rate_limit.interactive_paths.size(); ++i) {
    const std::string& p = c.rate_limit.interactive_paths[i];
    if (!p.starts_with("/") || p.find_first_of(" \t\r\n?#") != std::string::npos) {
      ck.error(index_path("rate_limit.interactive_paths", i),
               quote_json(p) + " is not a path pattern; expected \"/...\" without spaces, query or fragment");
    }
  }
}

// circuit_breaker.* and retry.*
void check_resilience(checker& ck, const config& c) {
  ck.at_least("circuit_breaker.failure_threshold", c.circuit_breaker.failure_threshold, 1);
  ck.positive_ms("circuit_breaker.open_ms", c.circuit_breaker.open_ms);
  if (c.circuit_breaker.max_open_ms < c.circuit_breaker.open_ms) {
    ck.error("circuit_breaker.max_open_ms", "must be at least circuit_breaker.open_ms (" +
                                                std::to_string(c.circuit_breaker.open_ms) + "), got " +
                                                std::to_string(c.circuit_breaker.max_open_ms));
  }
  ck.at_least("circuit_breaker.half_open_probes", c.circuit_breaker.half_open_probes, 1);

  ck.at_least("retry.max_attempts", c.retry.max_attempts, 1, "1 means no retries");
  ck.at_most("retry.max_attempts", c.retry.max_attempts, 10);
  ck.at_least("retry.base_backoff_ms", c.retry.base_backoff_ms, 1);
  if (c.retry.max_backoff_ms < c.retry.base_backoff_ms) {
    ck.error("retry.max_backoff_ms", "must be at least retry.base_backoff_ms (" +
                                         std::to_string(c.retry.base_backoff_ms) + "), got " +
                                         std::to_string(c.retry.max_backoff_ms));
  }
  if (!(c.retry.budget_fraction >= 0.0 && c.retry.budget_fraction <= 1.0)) {
    ck.error("retry.budget_fraction", "must be from 0 to 1, got " + json(c.retry.budget_fraction).dump());
  }
}

// fleet.* (when fleet mode is on)
void check_fleet(checker& ck, const config& c) {
  if (c.fleet) {
    const fleet_config& f = *c.fleet;
    if (f.redis.empty()) {
      ck.error("fleet.redis", "is required when fleet is set (or set \"fleet\": null for local mode)");
    } else if (auto u = explain_redis_url(f.redis); !u) {
      ck.error("fleet.redis",
               quote_json(redact_redis_url(f.redis)) + " is not a valid Redis URL: it " + u.error);
    }
    ck.at_least("fleet.lease_size", f.lease_size, 1);
    ck.positive_ms("fleet.timeout_ms", f.timeout_ms);
    ck.at_least("fleet.expected_replicas", f.expected_replicas, 1);
    if (!(f.fallback_share >= 0.0 && f.fallback_share <= 1.0)) {
      ck.error("fleet.fallback_share",
               "must be between 0 (= 1/expected_replicas) and 1, got " + json(f.fallback_share).dump());
    }
  }
}

// log.* and client.*
void check_log_and_client(checker& ck, const config& c) {
  ck.one_of("log.level", c.log.level, {"trace", "debug", "info", "warn", "error"});
  ck.one_of("log.format", c.log.format, {"json", "text"});
  if (!(c.log.access_sample >= 0.0 && c.log.access_sample <= 1.0)) {
    ck.error("log.access_sample",
             "must be from 0 (errors only) to 1 (every request), got " + json(c.log.access_sample).dump());
  }

  ck.positive_ms("client.header_timeout_ms", c.client.header_timeout_ms);
  ck.positive_ms("client.idle_timeout_ms", c.client.idle_timeout_ms);
  ck.positive_ms("client.request_timeout_ms", c.client.request_timeout_ms);
  // Smaller than this cannot hold a request line plus Host and Proxy-Authorization.
  ck.at_least("client.max_header_bytes", c.client.max_header_bytes, 1024);
  // Beast stores a field in at most 64 KiB and throws on a longer one; the connection buffers
  // are bounded by this value, so no head or chunked trailer can hold such a field.
  if (c.client.max_header_bytes > max_head_bytes) {
    ck.error("client.max_header_bytes", "must be at most " + std::to_string(max_head_bytes) + ", got " +
                                            std::to_string(c.client.max_header_bytes));
  }
  ck.at_least("client.max_header_count", c.client.max_header_count, 1);
  ck.at_least("client.max_connections", c.client.max_connections, 1);
}

// access.* and admin.*
void check_access_and_admin(checker& ck, const config& c) {
  ck.non_empty_if_set("access.proxy_auth_file", c.access.proxy_auth_file);
  if (c.access.proxy_auth_env && !is_env_name(*c.access.proxy_auth_env)) {
    ck.error("access.proxy_auth_env", quote_json(*c.access.proxy_auth_env) +
                                          " is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
  }
  for (std::size_t i = 0; i < c.access.allowed_clients.size(); ++i) {
    auto r = explain_cidr(c.access.allowed_clients[i]);
    if (!r) {
      ck.error(index_path("access.allowed_clients", i),
               quote_json(c.access.allowed_clients[i]) + " is not a CIDR: " + r.error);
    }
  }
  if (c.access.allowed_ports.empty()) {
    ck.error("access.allowed_ports", "must list at least one port (e.g. [443])");
  }
  for (std::size_t i = 0; i < c.access.allowed_ports.size(); ++i) {
    if (c.access.allowed_ports[i] == 0) {
      ck.error(index_path("access.allowed_ports", i), "must be a port from 1 to 65535, got 0");
    }
  }
  for (std::size_t i = 0; i < c.admin.allowed_hosts.size(); ++i) {
    const std::string& h = c.admin.allowed_hosts[i];
    if (!is_host_name_or_ipv4(h) && !http::parse_ipv6(h)) {
      ck.error(index_path("admin.allowed_hosts", i),
               quote_json(h) + " is not a host name (give names without port, e.g. \"sidecar.internal\")");
    }
  }
}

}  // namespace

std::vector<std::string> validate(const config& c) {
  // Section by section, in the order of the configuration file, so errors come in that order.
  checker ck;
  check_listeners_and_hosts(ck, c);
  check_upstream(ck, c);
  check_rate_limit(ck, c);
  check_resilience(ck, c);
  check_fleet(ck, c);
  check_log_and_client(ck, c);
  check_access_and_admin(ck, c);
  return ck.take();
}

nlohmann::ordered_json to_json(const config& c, secrets mode) {
  using oj = nlohmann::ordered_json;
  auto opt = [](const std::optional<std::string>& v) { return v ? oj(*v) : oj(nullptr); };
  auto derived = [](const std::string& v) { return v.empty() ? oj(nullptr) : oj(v); };
  oj resolve = oj::object();
  for (const auto& [k, v] : c.upstream.resolve) resolve[k] = v.to_string();
  oj fleet = nullptr;
  if (c.fleet) {
    fleet = {{"redis", mode == secrets::redact ? redact_redis_url(c.fleet->redis) : c.fleet->redis},
             {"key_prefix", c.fleet->key_prefix},
             {"lease_size", c.fleet->lease_size},
             {"timeout_ms", c.fleet->timeout_ms},
             {"expected_replicas", c.fleet->expected_replicas},
             {"fallback_share", c.fleet->fallback_share}};
  }
  oj out = oj::object();
  out["listen"] = c.listen.to_string();
  out["admin_listen"] = c.admin_listen.to_string();
  out["state_dir"] = c.state_dir;
  out["threads"] = c.threads;
  out["intercept_hosts"] = c.intercept_hosts;
  out["tunnel_hosts"] = c.tunnel_hosts;
  out["ca"] = {{"cert_file", derived(c.ca.cert_file)},
               {"key_file", derived(c.ca.key_file)},
               {"create_if_missing", c.ca.create_if_missing}};
  out["upstream"] = {{"trust_file", opt(c.upstream.trust_file)},
                     {"resolve", resolve},
                     {"connect_timeout_ms", c.upstream.connect_timeout_ms},
                     {"tls_handshake_timeout_ms", c.upstream.tls_handshake_timeout_ms},
                     {"response_timeout_ms", c.upstream.response_timeout_ms},
                     {"idle_timeout_ms", c.upstream.idle_timeout_ms},
                     {"max_connections_per_host", c.upstream.max_connections_per_host},
                     {"insecure_skip_verify", c.upstream.insecure_skip_verify}};
  out["rate_limit"] = {{"max_wait_ms", c.rate_limit.max_wait_ms},
                       {"max_queue", c.rate_limit.max_queue},
                       {"max_queue_total", c.rate_limit.max_queue_total},
                       {"max_auth_servers_per_host", c.rate_limit.max_auth_servers_per_host},
                       {"max_concurrency", c.rate_limit.max_concurrency},
                       {"initial_concurrency", c.rate_limit.initial_concurrency},
                       {"coalesce", c.rate_limit.coalesce},
                       {"capacity_percent", c.rate_limit.capacity_percent},
                       {"reserve_fraction", c.rate_limit.reserve_fraction},
                       {"buckets_file", opt(c.rate_limit.buckets_file)},
                       {"interactive_paths", c.rate_limit.interactive_paths}};
  out["cache"] = {{"enabled", c.cache.enabled}, {"stale_if_error_s", c.cache.stale_if_error_s}};
  out["circuit_breaker"] = {{"failure_threshold", c.circuit_breaker.failure_threshold},
                            {"open_ms", c.circuit_breaker.open_ms},
                            {"max_open_ms", c.circuit_breaker.max_open_ms},
                            {"half_open_probes", c.circuit_breaker.half_open_probes}};
  out["retry"] = {{"max_attempts", c.retry.max_attempts},
                  {"base_backoff_ms", c.retry.base_backoff_ms},
                  {"max_backoff_ms", c.retry.max_backoff_ms},
                  {"budget_fraction", c.retry.budget_fraction},
                  {"on_timeout", c.retry.on_timeout}};
  out["auth"] = {{"reject_expired_locally", c.auth.reject_expired_locally}};
  out["fleet"] = fleet;
  out["log"] = {{"level", c.log.level}, {"format", c.log.format}, {"access_sample", c.log.access_sample}};
  out["client"] = {{"header_timeout_ms", c.client.header_timeout_ms},
                   {"idle_timeout_ms", c.client.idle_timeout_ms},
                   {"request_timeout_ms", c.client.request_timeout_ms},
                   {"drain_timeout_ms", c.client.drain_timeout_ms},
                   {"max_header_bytes", c.client.max_header_bytes},
                   {"max_header_count", c.client.max_header_count},
                   {"max_body_bytes", c.client.max_body_bytes},
                   {"max_buffered_body_bytes", c.client.max_buffered_body_bytes},
                   {"max_connections", c.client.max_connections}};
  out["access"] = {{"proxy_auth_file", opt(c.access.proxy_auth_file)},
                   {"proxy_auth_env", opt(c.access.proxy_auth_env)},
                   {"allowed_clients", c.access.allowed_clients},
                   {"allowed_ports", c.access.allowed_ports},
                   {"allow_private_destinations", c.access.allow_private_destinations},
                   {"allow_cleartext", c.access.allow_cleartext}};
  out["admin"] = {{"expose_status", c.admin.expose_status}, {"allowed_hosts", c.admin.allowed_hosts}};
  return out;
}

const std::vector<std::string>& known_key_paths() {
  static const std::vector<std::string> paths = [] {
    config c;
    c.fleet = fleet_config{};
    std::vector<std::string> out;
    auto walk = [&](auto& self, const nlohmann::ordered_json& obj, const std::string& prefix) -> void {
      for (const auto& [k, v] : obj.items()) {
        std::string p = prefix.empty() ? k : prefix + "." + k;
        out.push_back(p);
        if (v.is_object() && p != "upstream.resolve") self(self, v, p);
      }
    };
    walk(walk, to_json(c, secrets::keep), "");
    return out;
  }();
  return paths;
}

}  // namespace okta_sidecar::config
