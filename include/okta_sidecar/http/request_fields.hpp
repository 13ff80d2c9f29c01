#pragma once
// The fields of a client request that the proxy reads, found in one pass over them.
#include <span>
#include <string_view>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::http {

// Each value is that of the first field of its name, as a lookup by name gives it: a view
// into the fields read, valid while they are; a name not there leaves the default view, whose
// data() is null (a value present, empty or not, points into its message). One pass costs less than two
// lookups by name in Beast's fields (a tree walked with case-insensitive comparisons, about 250 instructions
// each), and a request was asked about ten names.
struct request_fields {
  std::string_view host;
  std::string_view authorization;
  std::string_view proxy_authorization;
  std::string_view expect;
  std::string_view traceparent;
  std::string_view max_wait;     // X-Okta-Sidecar-Max-Wait-Ms
  std::string_view retry_count;  // X-Okta-Retry-Count
  // What request coalescing and the cache key by.
  std::string_view cookie;
  std::string_view accept;
  std::string_view accept_encoding;
  std::string_view accept_language;
  std::string_view cache_control;
  std::string_view pragma;
  bool has_retry_for = false;  // X-Okta-Retry-For
  bool conditional = false;    // Range, If-Range or an If-* precondition
  // The options of every Connection field (RFC 9110 §7.6.1).
  bool connection_close = false;
  bool connection_keep_alive = false;

  bool has_host() const { return host.data() != nullptr; }

  // Whether the client's connection persists after this request (RFC 9112 §9.3): HTTP/1.1
  // unless Connection says close, HTTP/1.0 only when it says keep-alive (and not close).
  bool keep_alive(unsigned version) const {
    return !connection_close && (version >= 11 || connection_keep_alive);
  }
};

request_fields read_request_fields(std::span<const header_view> fields);

}  // namespace okta_sidecar::http
