#pragma once
// Request-target normalisation so that equivalent spellings of a path classify alike.
#include <string>
#include <string_view>

namespace okta_sidecar::ratelimit {

// Strips ?query/#fragment, percent-decodes unreserved characters only (RFC 3986 §2.3; %2F
// stays encoded so it never becomes a segment separator), collapses "//", resolves "." and
// ".." segments (RFC 3986 §5.2.4) and drops a trailing "/". The result always starts with "/".
std::string normalize_path(std::string_view target);

}  // namespace okta_sidecar::ratelimit
