#include "okta_sidecar/http/redact.hpp"

#include <algorithm>
#include <array>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::http {

namespace {

// Name with case folded and '_' / '-' dropped, so spellings of one name compare equal.
std::string fold_name(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name)
    if (c != '_' && c != '-') out += ascii_lower(c);
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

constexpr std::array<std::string_view, 11> secret_header_names = {"authorization",
                                                                  "proxyauthorization",
                                                                  "cookie",
                                                                  "setcookie",
                                                                  "xapikey",
                                                                  "apikey",
                                                                  "xauthtoken",
                                                                  "xaccesstoken",
                                                                  "xcsrftoken",
                                                                  "xxsrftoken",
                                                                  "xoktauseragentextended_never"};

constexpr std::array<std::string_view, 8> secret_header_fragments = {
    "token", "secret", "password", "session", "cookie", "apikey", "signature", "credential"};

// Always secret, in every context.
constexpr std::array<std::string_view, 22> strong_params = {
    "clientsecret", "password",     "passwd",      "pwd",          "idtoken",
    "accesstoken",  "refreshtoken", "token",       "assertion",    "clientassertion",
    "subjecttoken", "actortoken",   "devicecode",  "codeverifier", "sessiontoken",
    "passcode",     "otp",          "newpassword", "oldpassword",  "apikey",
    "secret",       "authorization"};

// Secret as a query/form/JSON parameter, but ordinary words in prose ("code=200").
constexpr std::array<std::string_view, 4> weak_params = {"code", "state", "answer", "usercode"};

bool is_strong_param(std::string_view name) {
  const std::string f = fold_name(name);
  if (f.empty()) return false;
  if (std::find(strong_params.begin(), strong_params.end(), f) != strong_params.end()) return true;
  return ends_with(f, "token") || ends_with(f, "secret") || ends_with(f, "password");
}

bool is_weak_param(std::string_view name) {
  const std::string f = fold_name(name);
  return std::find(weak_params.begin(), weak_params.end(), f) != weak_params.end();
}

bool is_word_char(char c) { return is_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '.'; }

// Characters of a credential after an auth scheme: token68 (RFC 9110 §11.2) plus '.' and '~'.
bool is_cred_char(char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' ||
         c == '=';
}

// A base64/JWT-looking word, not prose: prose after "Bearer" or "Basic" ("basic information")
// is short and lower-case; real credentials are long or mixed-case.
bool looks_like_credential(std::string_view word) {
  if (word.size() >= 16) return true;
  return std::any_of(word.begin(), word.end(), [](char c) { return !(c >= 'a' && c <= 'z'); });
}

bool is_jwt_char(char c) { return is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.'; }

// eyJ + base64url, with at least one '.' (JWS has 2, JWE 4).
bool looks_like_jwt(std::string_view word) {
  if (word.size() < 10 || word.substr(0, 3) != "eyJ") return false;
  return word.find('.') != std::string_view::npos;
}

// End of an unquoted value: a delimiter of query strings, prose, JSON or header lists.
bool ends_plain_value(char c) {
  return c == '&' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ';' || c == '"' ||
         c == '\'' || c == '<' || c == '>' || c == ')' || c == '}' || c == ']';
}

// Keys we look up are short names; a "key" spanning lines or holding escapes is two quotes
// that happen to enclose other text.
bool plausible_json_key(std::string_view key) {
  if (key.size() > 128) return false;
  return std::none_of(key.begin(), key.end(), [](char c) {
    return c == '\\' || c == '"' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

std::size_t skip_ws(std::string_view t, std::size_t i) {
  while (i < t.size() && (t[i] == ' ' || t[i] == '\t')) ++i;
  return i;
}

// End (exclusive) of a JSON string starting at the opening quote t[i]; t.size() if unclosed.
std::size_t json_string_end(std::string_view t, std::size_t i) {
  for (++i; i < t.size(); ++i) {
    if (t[i] == '\\') {
      ++i;
    } else if (t[i] == '"') {
      return i + 1;
    }
  }
  return t.size();
}

// End (exclusive) of a JSON value starting at t[i]: a string, a balanced object or array
// (strings inside honoured), or a scalar up to the next delimiter.
std::size_t json_value_end(std::string_view t, std::size_t i) {
  if (i >= t.size()) return i;
  if (t[i] == '"') return json_string_end(t, i);
  if (t[i] == '{' || t[i] == '[') {
    int depth = 0;
    while (i < t.size()) {
      const char c = t[i];
      if (c == '"') {
        i = json_string_end(t, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return t.size();
  }
  while (i < t.size() && !ends_plain_value(t[i])) ++i;
  return i;
}

std::size_t plain_value_end(std::string_view t, std::size_t i) {
  if (i < t.size() && (t[i] == '"' || t[i] == '\'')) {
    // A quoted value ends at its closing quote, or at the end of the line if there is none.
    const char q = t[i];
    std::size_t j = i + 1;
    while (j < t.size() && t[j] != q && t[j] != '\r' && t[j] != '\n') ++j;
    return j < t.size() && t[j] == q ? j + 1 : j;
  }
  while (i < t.size() && !ends_plain_value(t[i])) ++i;
  return i;
}

std::size_t line_end(std::string_view t, std::size_t i) {
  while (i < t.size() && t[i] != '\r' && t[i] != '\n') ++i;
  return i;
}

std::string percent_decode_lossy(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && is_hex_digit(s[i + 1]) && is_hex_digit(s[i + 2])) {
      auto hv = [](char c) { return is_digit(c) ? c - '0' : ascii_lower(c) - 'a' + 10; };
      out += static_cast<char>(hv(s[i + 1]) * 16 + hv(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

constexpr std::array<std::string_view, 4> auth_schemes = {"ssws", "bearer", "basic", "dpop"};

}  // namespace

bool is_secret_header(std::string_view name) {
  const std::string f = fold_name(name);
  if (std::find(secret_header_names.begin(), secret_header_names.end(), f) != secret_header_names.end())
    return true;
  return std::any_of(secret_header_fragments.begin(), secret_header_fragments.end(),
                     [&](std::string_view frag) { return f.find(frag) != std::string::npos; });
}

bool is_secret_param(std::string_view name) { return is_strong_param(name) || is_weak_param(name); }

namespace {

// A "Name: value" line whose whole value is a credential: the known names, or a header-like
// (hyphenated) name with a secret fragment ("X-Okta-Session-Id: ...").
bool is_secret_header_line(std::string_view name) {
  const std::string f = fold_name(name);
  if (std::find(secret_header_names.begin(), secret_header_names.end(), f) != secret_header_names.end())
    return true;
  return name.find('-') != std::string_view::npos && is_secret_header(name);
}

// A secret value that is itself "Bearer xyz": the credential after the scheme goes too.
std::size_t extend_over_scheme(std::string_view t, std::size_t v, std::size_t v_end) {
  const std::string_view value = t.substr(v, v_end - v);
  if (std::none_of(auth_schemes.begin(), auth_schemes.end(),
                   [&](std::string_view s) { return iequals(value, s); }))
    return v_end;
  std::size_t k = skip_ws(t, v_end);
  while (k < t.size() && is_cred_char(t[k])) ++k;
  return k;
}

}  // namespace

std::string redact_text(std::string_view t) {
  std::string out;
  out.reserve(t.size());
  std::size_t i = 0;
  while (i < t.size()) {
    const char c = t[i];
    if (c == '"') {
      // "key": value (JSON). Keys with escapes are not secrets we know; scan on.
      const std::size_t key_end = json_string_end(t, i);
      if (key_end <= t.size() && key_end >= i + 2 && t[key_end - 1] == '"') {
        const std::string_view key = t.substr(i + 1, key_end - i - 2);
        std::size_t k = skip_ws(t, key_end);
        if (k < t.size() && t[k] == ':' && plausible_json_key(key) &&
            (is_secret_param(key) || is_secret_header(key))) {
          k = skip_ws(t, k + 1);
          // The key itself is scrubbed too: it is text like any other ("Bearer x": ...).
          out += '"';
          out += redact_text(key);
          out.append(t.substr(key_end - 1, k - key_end + 1));
          out += '"';
          out += redacted;
          out += '"';
          i = json_value_end(t, k);
          continue;
        }
      }
      out += c;
      ++i;
      continue;
    }
    if (!is_word_char(c) || (i > 0 && is_word_char(t[i - 1]))) {
      out += c;
      ++i;
      continue;
    }
    std::size_t w_end = i;
    while (w_end < t.size() && is_word_char(t[w_end])) ++w_end;
    const std::string_view word = t.substr(i, w_end - i);

    // Auth scheme followed by a credential ("SSWS 00ab...", "Bearer eyJ...").
    if (std::any_of(auth_schemes.begin(), auth_schemes.end(),
                    [&](std::string_view s) { return iequals(word, s); })) {
      const std::size_t k = skip_ws(t, w_end);
      std::size_t cred_end = k;
      while (cred_end < t.size() && is_cred_char(t[cred_end])) ++cred_end;
      const std::string_view cred = t.substr(k, cred_end - k);
      // `Basic realm="x"` is a challenge: an auth-param, not a token68 credential.
      const bool auth_param =
          !cred.empty() && cred.back() == '=' && cred_end < t.size() && t[cred_end] == '"';
      std::string_view bare = cred;
      while (!bare.empty() && bare.back() == '=') bare.remove_suffix(1);
      if (k > w_end && !bare.empty() && !auth_param &&
          (iequals(word, "ssws") || looks_like_credential(bare))) {
        out.append(t.substr(i, k - i));
        out += redacted;
        i = cred_end;
        continue;
      }
    }
    // A JWT-shaped word anywhere.
    std::size_t jwt_end = i;
    while (jwt_end < t.size() && is_jwt_char(t[jwt_end])) ++jwt_end;
    if (looks_like_jwt(t.substr(i, jwt_end - i))) {
      out += redacted;
      i = jwt_end;
      continue;
    }
    if (w_end < t.size() && t[w_end] == '=') {
      // key=value: weak names only in query/form position (start of text, after '?' or '&').
      const bool form_position = i == 0 || t[i - 1] == '?' || t[i - 1] == '&';
      if (is_strong_param(word) || is_secret_header(word) || (form_position && is_weak_param(word))) {
        const std::size_t v = w_end + 1;
        const std::size_t v_end = extend_over_scheme(t, v, plain_value_end(t, v));
        out.append(word);
        out += '=';
        out += redacted;
        i = std::max(v_end, v);
        continue;
      }
    } else if (w_end < t.size() && t[w_end] == '"') {
      // key": value -- a JSON key whose opening quote was part of something before it.
      std::size_t k = skip_ws(t, w_end + 1);
      if (k < t.size() && t[k] == ':' && (is_secret_param(word) || is_secret_header(word))) {
        k = skip_ws(t, k + 1);
        out.append(t.substr(i, k - i));
        out += '"';
        out += redacted;
        out += '"';
        i = json_value_end(t, k);
        continue;
      }
    } else if (w_end < t.size() && t[w_end] == ':') {
      if (is_secret_header_line(word)) {
        // "Authorization: SSWS ..." / "Cookie: a=b; c=d": the whole rest of the line.
        const std::size_t v = skip_ws(t, w_end + 1);
        out.append(t.substr(i, v - i));
        out += redacted;
        i = line_end(t, v);
        continue;
      }
      if (is_strong_param(word)) {
        const std::size_t v = skip_ws(t, w_end + 1);
        const std::size_t v_end = extend_over_scheme(t, v, plain_value_end(t, v));
        if (v_end > v) {
          out.append(t.substr(i, v - i));
          out += redacted;
          i = v_end;
          continue;
        }
      }
    }
    out.append(word);
    i = w_end;
  }
  return out;
}

std::string redact_target(std::string_view target) {
  std::string out;
  std::string_view rest = target;
  // Absolute-form with userinfo: scheme://user:pass@host/...
  if (const auto sep = rest.find("://"); sep != std::string_view::npos && rest.find('?') > sep) {
    const auto auth_start = sep + 3;
    const auto auth_end = std::min(rest.find_first_of("/?#", auth_start), rest.size());
    const auto at = rest.substr(0, auth_end).rfind('@');
    out.append(rest.substr(0, auth_start));
    if (at != std::string_view::npos && at >= auth_start) {
      out += redacted;
      out += '@';
      rest.remove_prefix(at + 1);
    } else {
      rest.remove_prefix(auth_start);
    }
  }
  const auto q = rest.find('?');
  // The path keeps its shape, but a token pasted into it is still scrubbed.
  out += redact_text(rest.substr(0, q));
  if (q == std::string_view::npos) return out;
  out += '?';
  std::string_view query = rest.substr(q + 1);
  bool first = true;
  for (;;) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (!first) out += '&';
    first = false;
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos) {
      out += looks_like_jwt(pair) ? std::string(redacted) : redact_text(pair);
    } else {
      const std::string_view name = pair.substr(0, eq);
      const std::string_view value = pair.substr(eq + 1);
      out.append(name);
      out += '=';
      const std::string decoded = percent_decode_lossy(name);
      const std::string decoded_value = percent_decode_lossy(value);
      if (is_secret_param(decoded) || is_secret_header(decoded)) {
        out += redacted;
      } else if (redact_text(decoded_value) != decoded_value) {
        out += redacted;  // e.g. a JWT or "Bearer ..." inside an ordinary parameter
      } else {
        out.append(value);
      }
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace okta_sidecar::http
