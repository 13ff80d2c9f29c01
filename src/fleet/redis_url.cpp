#include "okta_sidecar/fleet/redis_url.hpp"

#include <charconv>

namespace okta_sidecar::fleet {

namespace {

bool fail(std::string* error, std::string msg) {
  if (error) *error = std::move(msg);
  return false;
}

// RFC 3986 §2.1 percent-decoding, for passwords holding reserved characters.
std::optional<std::string> decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int v = 0;
    const auto r = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (r.ec != std::errc{} || r.ptr != s.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

}  // namespace

std::optional<redis_url> redis_url::parse(std::string_view text, std::string* error) {
  redis_url u;
  std::string_view rest;
  if (text.starts_with("redis://")) {
    rest = text.substr(8);
  } else if (text.starts_with("rediss://")) {
    u.tls = true;
    rest = text.substr(9);
  } else {
    fail(error, "must start with redis:// or rediss://");
    return std::nullopt;
  }
  std::string_view path;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = userinfo.find(':');
    const auto user = decode(userinfo.substr(0, colon));
    const auto pass =
        colon == std::string_view::npos ? std::optional<std::string>("") : decode(userinfo.substr(colon + 1));
    if (!user || !pass) {
      fail(error, "bad percent-encoding in the user or password");
      return std::nullopt;
    }
    if (colon == std::string_view::npos) {
      // redis://secret@host: a lone userinfo is the password, as redis-cli reads it.
      u.password = *user;
    } else {
      u.user = *user;
      u.password = *pass;
    }
  }
  std::string_view host = rest, port;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) {
      fail(error, "unterminated [IPv6] host");
      return std::nullopt;
    }
    host = rest.substr(1, close - 1);
    const auto after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        fail(error, "unexpected text after the [IPv6] host");
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) {
    fail(error, "has no host");
    return std::nullopt;
  }
  u.host = std::string(host);
  if (!port.empty()) {
    unsigned v = 0;
    const auto r = std::from_chars(port.data(), port.data() + port.size(), v);
    if (r.ec != std::errc{} || r.ptr != port.data() + port.size() || v == 0 || v > 65535) {
      fail(error, "port must be 1-65535");
      return std::nullopt;
    }
    u.port = static_cast<std::uint16_t>(v);
  }
  if (!path.empty()) {
    int db = 0;
    const auto r = std::from_chars(path.data(), path.data() + path.size(), db);
    if (r.ec != std::errc{} || r.ptr != path.data() + path.size() || db < 0) {
      fail(error, "database (the path) must be a number >= 0");
      return std::nullopt;
    }
    u.db = db;
  }
  return u;
}

std::string redis_url::redacted() const {
  std::string out = tls ? "rediss://" : "redis://";
  if (!user.empty() || !password.empty()) {
    out += user;
    if (!password.empty()) out += ":***";
    out += "@";
  }
  out += host.find(':') != std::string::npos ? "[" + host + "]" : host;
  out += ":" + std::to_string(port) + "/" + std::to_string(db);
  return out;
}

}  // namespace okta_sidecar::fleet
