#pragma once
// Request-target normalisation so that equivalent spellings of a path classify alike, and the
// path patterns matched against the result.
#include <string>
#include <string_view>

namespace okta_sidecar::ratelimit {

// Strips ?query/#fragment, percent-decodes unreserved characters only (RFC 3986 §2.3; %2F
// stays encoded so it never becomes a segment separator), collapses "//", resolves "." and
// ".." segments (RFC 3986 §5.2.4) and drops a trailing "/". The result always starts with "/".
std::string normalize_path(std::string_view target);

// normalize_path(target) without its allocation when the path is already normal (nearly
// always): a view into `target`; otherwise the normalised path, kept in `storage`.
std::string_view normal_path(std::string_view target, std::string& storage);

// Whether a path (no query) is already what normalize_path() would make of it. Requests nearly
// always arrive in normal form: recognising that spares the per-request path its allocations.
bool already_normal(std::string_view path);

// rate_limit.interactive_paths patterns against a normalised path: '*' matches within one path
// segment ("/oauth2/*/v1/token"); a trailing '*' matches the rest, across segments.
bool path_glob_match(std::string_view pattern, std::string_view path);

}  // namespace okta_sidecar::ratelimit
