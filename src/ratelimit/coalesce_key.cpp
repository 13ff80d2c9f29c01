#include "okta_sidecar/ratelimit/coalesce_key.hpp"

namespace okta_sidecar::ratelimit {

std::optional<std::string> coalesce_key(const read_request& r) {
  // RFC 9110 §9.2.1: only safe methods; POST/PUT/PATCH/DELETE each change something at Okta.
  if (r.method != "GET" && r.method != "HEAD") return std::nullopt;
  if (r.has_body || r.conditional_or_range) return std::nullopt;
  // Each part length-prefixed, so no value can slide into its neighbour.
  std::string key;
  key.reserve(r.method.size() + r.host.size() + r.path_and_query.size() + r.credential_digest.size() +
              r.accept.size() + r.accept_encoding.size() + r.accept_language.size() + 48);
  const std::string port = std::to_string(r.port);
  for (const std::string_view part : {r.method, r.host, std::string_view(port), r.path_and_query,
                                      r.credential_digest, r.accept, r.accept_encoding, r.accept_language}) {
    key.append(std::to_string(part.size()));
    key.push_back(':');
    key.append(part);
  }
  return key;
}

}  // namespace okta_sidecar::ratelimit
