#include "okta_sidecar/auth/token_info.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "okta_sidecar/auth/base64url.hpp"
#include "okta_sidecar/auth/sha256.hpp"

namespace okta_sidecar::auth {

namespace {

// Deeper JSON than this is not a JWT anyone issued, and refusing it before nlohmann sees it
// keeps parsing cost and recursion bounded.
constexpr int max_json_depth = 16;

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool is_b64token(std::string_view s) {
  std::size_t i = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
    if (!ok) break;
  }
  if (i == 0) return false;
  for (; i < s.size(); ++i) {
    if (s[i] != '=') return false;
  }
  return true;
}

bool has_whitespace(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

bool is_quoted(std::string_view s) {
  return !s.empty() && (s.front() == '"' || s.front() == '\'' || s.back() == '"' || s.back() == '\'');
}

bool json_too_deep(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '{' || c == '[') {
      if (++depth > max_json_depth) return true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

std::optional<nlohmann::json> parse_object(std::string_view text) {
  if (json_too_deep(text)) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  return j;
}

std::optional<std::int64_t> numeric_date(const nlohmann::json& claims, const char* name) {
  const auto it = claims.find(name);
  if (it == claims.end()) return std::nullopt;
  // nlohmann counts unsigned numbers as integers too, so ask about unsigned first.
  if (it->is_number_unsigned()) {
    const auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(v);
  }
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_number_float()) {
    // RFC 7519 §2 NumericDate may carry fractions; whole seconds are enough here.
    const double v = it->get<double>();
    if (!std::isfinite(v) || v >= 9.2e18 || v <= -9.2e18) return std::nullopt;
    return static_cast<std::int64_t>(std::floor(v));
  }
  return std::nullopt;
}

std::string string_claim(const nlohmann::json& claims, const char* name) {
  const auto it = claims.find(name);
  return (it != claims.end() && it->is_string()) ? it->get<std::string>() : std::string{};
}

std::vector<std::string> split_spaces(const std::string& s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t j = s.find(' ', i);
    const std::size_t end = j == std::string::npos ? s.size() : j;
    if (end > i) out.push_back(s.substr(i, end - i));
    i = end + 1;
  }
  return out;
}

// A string or an array of strings (RFC 7519 §4.1.3 for aud; Okta's scp is an array, the
// RFC 8693 "scope" claim a space-separated string).
std::vector<std::string> string_list_claim(const nlohmann::json& claims, const char* name) {
  std::vector<std::string> out;
  const auto it = claims.find(name);
  if (it == claims.end()) return out;
  if (it->is_string()) return split_spaces(it->get<std::string>());
  if (it->is_array()) {
    for (const auto& v : *it) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

// A malformed credential is never fingerprinted (issue 14): it may be a password pasted into
// the wrong header, and even a keyed hash of it would be one more copy to guard.
token_info malformed(std::string reason, std::string_view) {
  token_info info;
  info.kind = credential_kind::malformed;
  info.malformed_reason = std::move(reason);
  return info;
}

void decode_jwt(std::string_view token, token_info& info) {
  const std::size_t dots = static_cast<std::size_t>(std::count(token.begin(), token.end(), '.'));
  if (dots == 1) {
    info = malformed("jwt_truncated", token);
    return;
  }
  if (dots > 2) {
    info = malformed("jwt_wrong_segment_count", token);
    return;
  }
  const std::size_t first = token.find('.');
  const std::size_t second = token.find('.', first + 1);
  const std::string_view header_b64 = token.substr(0, first);
  const std::string_view claims_b64 = token.substr(first + 1, second - first - 1);
  const std::string_view signature_b64 = token.substr(second + 1);
  if (header_b64.empty() || claims_b64.empty() || signature_b64.empty()) {
    info = malformed("jwt_truncated", token);
    return;
  }
  const auto header_text = base64url_decode(header_b64);
  const auto claims_text = base64url_decode(claims_b64);
  if (!header_text || !claims_text || !base64url_decode(signature_b64)) {
    info = malformed("jwt_bad_base64", token);
    return;
  }
  const auto header = parse_object(*header_text);
  const auto claims = parse_object(*claims_text);
  if (!header || !claims) {
    info = malformed("jwt_not_json", token);
    return;
  }
  info.kind = credential_kind::bearer_jwt;
  info.exp = numeric_date(*claims, "exp");
  info.iat = numeric_date(*claims, "iat");
  info.nbf = numeric_date(*claims, "nbf");
  info.iss = string_claim(*claims, "iss");
  info.cid = string_claim(*claims, "cid");
  info.sub = string_claim(*claims, "sub");
  info.aud = string_list_claim(*claims, "aud");
  info.scp = string_list_claim(*claims, "scp");
  if (info.scp.empty()) info.scp = string_list_claim(*claims, "scope");
}

// Splits "Scheme credentials"; a value without a space is all credential, no scheme.
struct split_value {
  std::string_view scheme;
  std::string_view credential;
  bool has_scheme = false;
};

split_value split_scheme(std::string_view value) {
  const std::size_t sp = value.find_first_of(" \t");
  if (sp == std::string_view::npos) {
    if (iequals(value, "Bearer") || iequals(value, "SSWS")) return {value, {}, true};
    return {{}, value, false};
  }
  // RFC 6750 §2.1 allows 1*SP between the scheme and the token.
  return {value.substr(0, sp), trim_ows(value.substr(sp)), true};
}

}  // namespace

token_info inspect_authorization(std::string_view authorization_value, const credential_digest& digest) {
  const std::string_view value = trim_ows(authorization_value);
  if (value.empty()) return token_info{};
  if (value.size() > max_authorization_bytes) return malformed("token_too_large", value);
  if (value.front() == '"' || value.front() == '\'') return malformed("token_quoted", value);

  const split_value parts = split_scheme(value);
  if (!parts.has_scheme) {
    // A bare token: the most common cause is an SDK or script that forgot "Bearer ".
    if (has_whitespace(parts.credential)) return malformed("token_whitespace", parts.credential);
    return malformed("missing_bearer_prefix", parts.credential);
  }
  const std::string_view credential = parts.credential;
  const bool bearer = iequals(parts.scheme, "Bearer");  // schemes are case-insensitive (RFC 9110 §11.1)
  const bool ssws = iequals(parts.scheme, "SSWS");
  if (!bearer && !ssws) {
    if (is_b64token(parts.scheme) && std::count(parts.scheme.begin(), parts.scheme.end(), '.') == 2) {
      // "eyJ... trailing" : a JWT followed by junk, still no scheme.
      return malformed("missing_bearer_prefix", value);
    }
    return malformed("unsupported_scheme", credential);
  }
  if (credential.empty()) return malformed("empty_token", value);
  if (bearer && (istarts_with(credential, "Bearer ") || istarts_with(credential, "Bearer\t"))) {
    return malformed("duplicate_bearer_prefix", credential);
  }
  if (is_quoted(credential)) return malformed("token_quoted", credential);
  if (has_whitespace(credential)) return malformed("token_whitespace", credential);
  if (!is_b64token(credential)) return malformed("token_invalid_characters", credential);

  token_info info;
  if (ssws) {
    info.kind = credential_kind::ssws;
    if (digest && is_ssws_shaped(credential)) info.fingerprint = token_fingerprint(credential, digest);
    return info;
  }
  if (credential.find('.') == std::string_view::npos) {
    info.kind = credential_kind::bearer_opaque;
    return info;
  }
  decode_jwt(credential, info);
  if (digest && info.kind == credential_kind::bearer_jwt)
    info.fingerprint = token_fingerprint(credential, digest);
  return info;
}

bool is_ssws_shaped(std::string_view token) {
  if (token.size() < 20 || token.size() > 64 || !token.starts_with("00")) return false;
  return std::all_of(token.begin(), token.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

std::string token_fingerprint(std::string_view credential, const credential_digest& digest) {
  if (!digest) return {};
  const auto d = digest(credential);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < 6; ++i) {
    out += hex[d[i] >> 4];
    out += hex[d[i] & 15];
  }
  return out;
}

std::uint64_t caller_key(std::string_view authorization_value, const credential_digest& digest) {
  const std::string_view value = trim_ows(authorization_value);
  if (value.empty()) return 0;
  const split_value parts = split_scheme(value);
  const std::string_view credential =
      parts.has_scheme && !parts.credential.empty() ? parts.credential : value;
  const std::array<std::uint8_t, 32> d = digest ? digest(credential) : sha256_of(credential);
  std::uint64_t key = 0;
  for (int i = 0; i < 8; ++i) key = (key << 8) | d[static_cast<std::size_t>(i)];
  return key == 0 ? 1 : key;
}

caller_info inspect_caller(std::string_view authorization_value, const credential_digest& digest) {
  caller_info out;
  out.authorization = std::string(authorization_value);
  // Both read the same credential out of the value: its digest is taken once.
  std::string_view last;
  std::array<std::uint8_t, 32> last_digest{};
  bool have = false;
  const credential_digest once = [&](std::string_view credential) {
    if (!have || credential != last) {
      last_digest = digest(credential);
      last = credential;
      have = true;
    }
    return last_digest;
  };
  const credential_digest& d = digest ? once : digest;  // no key: caller_key hashes with SHA-256
  out.token = inspect_authorization(authorization_value, d);
  out.key = caller_key(authorization_value, d);
  return out;
}

bool expired_beyond(const token_info& info, std::int64_t okta_now_epoch, std::int64_t margin_seconds) {
  if (info.kind != credential_kind::bearer_jwt || !info.exp) return false;
  // Written as a comparison of differences so that extreme claims cannot overflow.
  if (okta_now_epoch < *info.exp) return false;
  const std::uint64_t ago =
      static_cast<std::uint64_t>(okta_now_epoch) - static_cast<std::uint64_t>(*info.exp);
  return margin_seconds < 0 || ago > static_cast<std::uint64_t>(margin_seconds);
}

const char* to_string(credential_kind kind) {
  switch (kind) {
    case credential_kind::none:
      return "none";
    case credential_kind::bearer_jwt:
      return "bearer_jwt";
    case credential_kind::bearer_opaque:
      return "bearer_opaque";
    case credential_kind::ssws:
      return "ssws";
    case credential_kind::malformed:
      return "malformed";
  }
  return "unknown";
}

}  // namespace okta_sidecar::auth
