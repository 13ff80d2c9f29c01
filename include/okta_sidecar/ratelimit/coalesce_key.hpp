#pragma once
// Which concurrent requests may share one upstream request and its response (coalescing).
// Only reads: GET and HEAD without a body, and never conditional or partial ones (their answers
// differ per request). Everything that can change the answer is in the key: method, host,
// port, path and query, the credential (as a digest: a response for one token is never handed
// to another) and the content-negotiation fields (Accept, Accept-Encoding, Accept-Language).
// Pure: no I/O.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::ratelimit {

struct read_request {
  std::string_view method;
  std::string_view host;
  std::uint16_t port = 443;
  std::string_view path_and_query;
  std::string_view credential_digest;  // of Authorization and Cookie; empty = anonymous
  std::string_view accept, accept_encoding, accept_language;
  bool has_body = false;
  bool conditional_or_range = false;  // If-* or Range present
};

// nullopt: this request must go upstream on its own.
std::optional<std::string> coalesce_key(const read_request& r);

}  // namespace okta_sidecar::ratelimit
