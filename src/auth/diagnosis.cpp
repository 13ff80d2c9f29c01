#include "okta_sidecar/auth/diagnosis.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

namespace okta_sidecar::auth {

namespace {

// Bigger error bodies are not Okta's error JSON; skipping them keeps the cost bounded.
constexpr std::size_t max_body_bytes = 64 * 1024;
// Okta's own words are quoted in advice only this far.
constexpr std::size_t max_quoted_chars = 120;
// iat a little ahead of the estimated Okta clock is rounding of whole-second Date headers.
constexpr std::int64_t iat_leeway_seconds = 60;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Okta's text goes into a log line and a header-adjacent field: printable ASCII, one line.
std::string sanitize(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (out.size() >= max_quoted_chars) {
      out += "...";
      break;
    }
    out.push_back((c >= 0x20 && c < 0x7f && c != '"') ? c : ' ');
  }
  return out;
}

// Only ids made of these characters go into a System Log filter (no quote can break out).
bool safe_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

// RFC 9110 §11.6.1 challenge: scheme, then comma-separated auth-params (token or
// quoted-string values). Keys are returned lower-cased.
std::map<std::string, std::string> parse_challenge(std::string_view v) {
  std::map<std::string, std::string> params;
  std::size_t i = v.find(' ');
  if (i == std::string_view::npos) return params;
  while (i < v.size()) {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) ++i;
    const std::size_t key_start = i;
    while (i < v.size() && v[i] != '=' && v[i] != ' ' && v[i] != ',') ++i;
    const std::string key = to_lower(v.substr(key_start, i - key_start));
    while (i < v.size() && v[i] == ' ') ++i;
    if (i >= v.size() || v[i] != '=') {
      ++i;
      continue;
    }
    ++i;
    while (i < v.size() && v[i] == ' ') ++i;
    std::string value;
    if (i < v.size() && v[i] == '"') {
      ++i;
      while (i < v.size() && v[i] != '"') {
        if (v[i] == '\\' && i + 1 < v.size()) ++i;
        value.push_back(v[i++]);
      }
      ++i;  // closing quote
    } else {
      while (i < v.size() && v[i] != ',' && v[i] != ' ') value.push_back(v[i++]);
    }
    if (!key.empty()) params.emplace(key, std::move(value));
  }
  return params;
}

struct okta_error {
  std::string code;         // errorCode, e.g. E0000011
  std::string summary;      // errorSummary
  std::string oauth_error;  // "error" of WWW-Authenticate or an OAuth JSON body
  std::string oauth_description;
  std::string challenge_scope;  // "scope" of WWW-Authenticate
};

okta_error read_error(std::string_view body, std::string_view www_authenticate) {
  okta_error e;
  if (!body.empty() && body.size() <= max_body_bytes) {
    const nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      auto str = [&](const char* k) {
        const auto it = j.find(k);
        return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string{};
      };
      e.code = str("errorCode");
      e.summary = str("errorSummary");
      e.oauth_error = str("error");
      e.oauth_description = str("error_description");
    }
  }
  const auto params = parse_challenge(www_authenticate);
  if (const auto it = params.find("error"); it != params.end()) e.oauth_error = it->second;
  if (const auto it = params.find("error_description"); it != params.end()) e.oauth_description = it->second;
  if (const auto it = params.find("scope"); it != params.end()) e.challenge_scope = it->second;
  return e;
}

// Which authorization server the requested path expects its tokens from.
enum class path_kind {
  management,       // /api/v1/*, /oauth2/v1/clients: org AS tokens with okta.* scopes
  org_resource,     // /oauth2/v1/userinfo, /idp/myaccount: org AS tokens
  custom_resource,  // /oauth2/{as}/v1/userinfo: tokens of that custom AS
  client_auth,      // /token, /introspect, /revoke...: Authorization is client authentication
  unauthenticated,  // /api/v1/authn, /keys, /.well-known: no token expected
  other,
};

struct path_class {
  path_kind kind = path_kind::other;
  std::string as_id;  // custom_resource / client_auth at a custom AS
};

path_class classify_path(std::string_view path) {
  const std::size_t q = path.find_first_of("?#");
  if (q != std::string_view::npos) path = path.substr(0, q);
  if (starts_with(path, "/api/v1/authn")) return {path_kind::unauthenticated, {}};
  if (starts_with(path, "/api/v1/")) return {path_kind::management, {}};
  if (starts_with(path, "/idp/myaccount")) return {path_kind::org_resource, {}};
  if (starts_with(path, "/.well-known/")) return {path_kind::unauthenticated, {}};
  if (!starts_with(path, "/oauth2/")) return {path_kind::other, {}};
  std::string_view rest = path.substr(8);
  std::string as_id;
  if (!starts_with(rest, "v1/")) {
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return {path_kind::other, {}};
    as_id = std::string(rest.substr(0, slash));
    rest = rest.substr(slash + 1);
    if (!starts_with(rest, "v1/")) {
      if (starts_with(rest, ".well-known/")) return {path_kind::unauthenticated, as_id};
      return {path_kind::other, as_id};
    }
  }
  const std::string_view endpoint = rest.substr(3);
  for (const char* e : {"token", "introspect", "revoke", "par", "device/authorize", "bc/authorize"}) {
    if (endpoint == e) return {path_kind::client_auth, as_id};
  }
  for (const char* e : {"keys", "authorize", "logout"}) {
    if (endpoint == e) return {path_kind::unauthenticated, as_id};
  }
  if (as_id.empty() && starts_with(endpoint, "clients")) return {path_kind::management, {}};
  if (endpoint == "userinfo") {
    return as_id.empty() ? path_class{path_kind::org_resource, {}}
                         : path_class{path_kind::custom_resource, as_id};
  }
  return {path_kind::other, as_id};
}

std::string normalize_host(std::string_view host) {
  std::string h = to_lower(host);
  if (h.size() > 4 && h.compare(h.size() - 4, 4, ":443") == 0) h.resize(h.size() - 4);
  return h;
}

struct issuer_parts {
  std::string host;  // lower-cased, default port dropped
  std::string path;  // "" for the org AS, "/oauth2/default" for a custom one
};

std::optional<issuer_parts> split_issuer(std::string_view iss) {
  std::string_view rest;
  if (starts_with(iss, "https://"))
    rest = iss.substr(8);
  else if (starts_with(iss, "http://"))
    rest = iss.substr(7);
  else
    return std::nullopt;
  const std::size_t slash = rest.find('/');
  issuer_parts p;
  p.host = normalize_host(rest.substr(0, slash));
  if (slash != std::string_view::npos) p.path = std::string(rest.substr(slash));
  while (!p.path.empty() && p.path.back() == '/') p.path.pop_back();
  return p;
}

std::string client_clause(const token_info& t) {
  return safe_id(t.cid) ? " and client.id eq \"" + t.cid + "\"" : std::string{};
}

std::string client_words(const token_info& t) {
  return safe_id(t.cid) ? " for client " + t.cid : std::string{};
}

// The System Log event that records tokens being minted for the token's client: shows
// when the app last got a token, from which server, with which scopes.
std::string issuance_query(const token_info& t) {
  const auto iss = split_issuer(t.iss);
  const bool custom = iss && !iss->path.empty();
  return std::string("eventType eq \"") +
         (custom ? "app.oauth2.as.token.grant.access_token" : "app.oauth2.token.grant.access_token") + "\"" +
         client_clause(t);
}

const std::string failed_grants_query =
    "(eventType eq \"app.oauth2.token.grant\" or eventType eq \"app.oauth2.as.token.grant\") and "
    "outcome.result eq \"FAILURE\"";

std::string malformed_advice(const token_info& t) {
  const std::string& r = t.malformed_reason;
  if (r == "token_quoted") return "remove the quotes around the token in the Authorization header";
  if (r == "token_whitespace") {
    return "the token contains whitespace or a line break: strip it (often a trailing newline "
           "read from a file or environment variable)";
  }
  if (r == "duplicate_bearer_prefix") return "the scheme Bearer is written twice: send it once";
  if (r == "empty_token") return "the Authorization header names a scheme but carries no token";
  if (r == "unsupported_scheme") {
    return "send 'Bearer <access token>' or 'SSWS <API token>' in the Authorization header; "
           "Okta's API accepts no other scheme";
  }
  if (r == "token_too_large") return "the Authorization value is too large to be an Okta token";
  return "the Bearer token is not a complete JWT (" + r +
         "): check that it was not cut off, re-encoded or mixed up with another value";
}

diagnosis credential_problem(const token_info& t, std::string_view host) {
  if (t.kind == credential_kind::none) {
    return {diagnosis_reason::missing_bearer_prefix,
            "no Authorization header reached Okta; send 'Bearer <access token>' (or "
            "'SSWS <API token>') in it",
            "eventType eq \"app.oauth2.token.grant.access_token\" or eventType eq "
            "\"app.oauth2.as.token.grant.access_token\""};
  }
  if (t.malformed_reason == "missing_bearer_prefix") {
    return {diagnosis_reason::missing_bearer_prefix,
            "the Authorization header holds a bare token; prefix it with 'Bearer ' (RFC 6750 "
            "section 2.1)",
            failed_grants_query};
  }
  if (t.kind == credential_kind::bearer_opaque) {
    return {diagnosis_reason::token_malformed,
            "Okta access tokens are JWTs but this Bearer token is opaque: send an API token as "
            "'SSWS <token>', or get an access token from https://" +
                normalize_host(host) + "/oauth2/v1/token",
            failed_grants_query};
  }
  return {diagnosis_reason::token_malformed, malformed_advice(t), failed_grants_query};
}

std::optional<diagnosis> check_issuer(const token_info& t, const path_class& pc, std::string_view host) {
  if (t.iss.empty()) return std::nullopt;
  const std::string want_host = normalize_host(host);
  const auto iss = split_issuer(t.iss);
  const std::string issuer = sanitize(t.iss);
  if (!iss || iss->host != want_host) {
    return diagnosis{diagnosis_reason::wrong_authorization_server,
                     "the token was issued by " + issuer + " but the request went to " + want_host +
                         ": get the token from this org's authorization server",
                     issuance_query(t)};
  }
  if ((pc.kind == path_kind::management || pc.kind == path_kind::org_resource) && !iss->path.empty()) {
    return diagnosis{diagnosis_reason::wrong_authorization_server,
                     "the token comes from the custom authorization server " + issuer +
                         "; Okta's own APIs need a token from the org authorization server "
                         "(https://" +
                         want_host + "/oauth2/v1/token)",
                     issuance_query(t)};
  }
  if (pc.kind == path_kind::custom_resource && iss->path != "/oauth2/" + pc.as_id) {
    return diagnosis{diagnosis_reason::wrong_authorization_server,
                     "the token comes from " + issuer +
                         " but this endpoint belongs to "
                         "authorization server '" +
                         sanitize(pc.as_id) + "' (https://" + want_host + "/oauth2/" + sanitize(pc.as_id) +
                         "/v1/token)",
                     issuance_query(t)};
  }
  return std::nullopt;
}

std::optional<diagnosis> check_audience(const token_info& t, const path_class& pc, std::string_view host) {
  // Only the org AS's audience is known: "https://{yourOktaDomain}". Custom servers choose
  // their own (e.g. api://default), which the sidecar cannot know.
  if (pc.kind != path_kind::management || t.aud.empty()) return std::nullopt;
  const std::string want = "https://" + normalize_host(host);
  for (std::string a : t.aud) {
    while (!a.empty() && a.back() == '/') a.pop_back();
    if (to_lower(a) == want) return std::nullopt;
  }
  return diagnosis{diagnosis_reason::audience_mismatch,
                   "the token's audience is " + sanitize(t.aud.front()) + " but Okta's API expects " + want +
                       ": request the token from " + want + "/oauth2/v1/token",
                   issuance_query(t)};
}

std::optional<diagnosis> check_lifetime(const token_info& t, const okta_error& e, std::int64_t now) {
  if (t.exp && now >= *t.exp) {
    return diagnosis{
        diagnosis_reason::token_expired,
        "refresh the token; it expired " + std::to_string(now - *t.exp) + " s ago" + client_words(t),
        issuance_query(t)};
  }
  if (t.nbf && now < *t.nbf) {
    return diagnosis{diagnosis_reason::token_not_yet_valid,
                     "the token becomes valid only in " + std::to_string(*t.nbf - now) +
                         " s (nbf): check the clock where it was minted",
                     issuance_query(t)};
  }
  if (t.iat && *t.iat - now > iat_leeway_seconds) {
    return diagnosis{diagnosis_reason::token_not_yet_valid,
                     "the token claims to be issued " + std::to_string(*t.iat - now) +
                         " s in the future (iat): check the clock where it was minted",
                     issuance_query(t)};
  }
  // Okta's words win when the local clock estimate disagrees.
  if (to_lower(e.oauth_description).find("expired") != std::string::npos) {
    return diagnosis{diagnosis_reason::token_expired,
                     "refresh the token; Okta reports it expired" + client_words(t), issuance_query(t)};
  }
  return std::nullopt;
}

diagnosis missing_scope(const token_info& t, const std::string& scope) {
  return {diagnosis_reason::missing_scope_prefix + scope,
          "request scope " + scope + client_words(t) +
              " (grant it on the app's Okta API Scopes tab, then get a new token)",
          issuance_query(t)};
}

// WWW-Authenticate's scope may list several, space-separated; the reason names one.
std::string first_scope(const std::string& challenge_scope) {
  const std::string s = sanitize(challenge_scope.substr(0, challenge_scope.find(' ')));
  return s.empty() ? "unknown" : s;
}

std::string okta_said(const okta_error& e) {
  std::string s;
  if (!e.code.empty()) s = sanitize(e.code);
  if (!e.summary.empty()) s += (s.empty() ? "" : " ") + sanitize(e.summary);
  if (!e.oauth_error.empty()) s += (s.empty() ? "" : ", ") + sanitize(e.oauth_error);
  // " - ", not ": ": the log redactor reads "invalid_token: x" as a secret named *token.
  if (!e.oauth_description.empty()) s += " - " + sanitize(e.oauth_description);
  return s.empty() ? "no error details" : s;
}

}  // namespace

diagnosis diagnose(int status, std::string_view method, std::string_view normalized_path,
                   std::string_view host, const token_info& token, std::string_view response_body,
                   std::string_view www_authenticate, std::int64_t okta_now_epoch,
                   const scope_table& scopes) {
  const okta_error err = read_error(response_body, www_authenticate);
  if (status != 401 && status != 403) {
    return {diagnosis_reason::unknown,
            "status " + std::to_string(status) + " is not an authentication failure", ""};
  }
  const path_class pc = classify_path(normalized_path);

  if (pc.kind == path_kind::client_auth) {
    return {diagnosis_reason::unknown,
            "Okta refused the client's own authentication (" + okta_said(err) +
                "): check the client id and secret or private-key JWT",
            failed_grants_query};
  }
  if (pc.kind == path_kind::unauthenticated) {
    return {diagnosis_reason::unknown,
            "this endpoint takes no access token; Okta refused the request itself (" + okta_said(err) +
                "), e.g. wrong credentials or a locked-out user",
            "eventType eq \"user.session.start\" and outcome.result eq \"FAILURE\""};
  }

  switch (token.kind) {
    case credential_kind::none:
    case credential_kind::malformed:
    case credential_kind::bearer_opaque:
      return credential_problem(token, host);
    case credential_kind::ssws:
      if (status == 401) {
        return {diagnosis_reason::ssws_token_invalid,
                "the API token (SSWS" +
                    (token.fingerprint.empty() ? "" : ", fingerprint " + token.fingerprint) +
                    ") is not valid: revoked, expired after 30 days unused, or its admin was "
                    "deactivated; create a new one or move to OAuth for Okta",
                "eventType eq \"system.api_token.revoke\""};
      }
      return {diagnosis_reason::not_assigned_or_policy,
              "the admin who created this API token lacks a role allowing " + std::string(method) +
                  " on this resource: use a token of an admin with a suitable role",
              "eventType eq \"user.account.privilege.grant\" or eventType eq "
              "\"user.account.privilege.revoke\""};
    case credential_kind::bearer_jwt:
      break;
  }

  if (status == 401) {
    if (auto d = check_issuer(token, pc, host)) return *d;
    if (auto d = check_audience(token, pc, host)) return *d;
    if (auto d = check_lifetime(token, err, okta_now_epoch)) return *d;
    if (err.oauth_error == "insufficient_scope") {
      const auto needed = scopes.required_scope(method, normalized_path);
      return missing_scope(token, needed ? *needed : first_scope(err.challenge_scope));
    }
    return {diagnosis_reason::unknown,
            "the token passed local checks (issuer, audience, lifetime) yet Okta refused it (" +
                okta_said(err) + "): it may be revoked or signed with a retired key; get a new token",
            "(eventType eq \"app.oauth2.token.revoke\" or eventType eq "
            "\"app.oauth2.as.token.revoke\")" +
                client_clause(token)};
  }

  // 403: the token was accepted; what it may do was not enough.
  const auto needed = scopes.required_scope(method, normalized_path);
  if (needed && !scopes.satisfied_by(token.scp, *needed)) return missing_scope(token, *needed);
  if (err.oauth_error == "insufficient_scope") {
    return missing_scope(token, needed ? *needed : first_scope(err.challenge_scope));
  }
  return {diagnosis_reason::not_assigned_or_policy,
          (needed ? "the token has the needed scope (" + *needed + ")"
                  : std::string("no needed scope is known to be missing")) +
              " but Okta still refused (" + okta_said(err) +
              "): the caller lacks an admin role for this resource, is not assigned to the app, "
              "or a policy denies it",
          "eventType eq \"user.account.privilege.grant\" or eventType eq "
          "\"user.account.privilege.revoke\" or eventType eq \"app.oauth2.as.authorize.scope_denied\""};
}

}  // namespace okta_sidecar::auth
