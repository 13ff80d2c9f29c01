#pragma once
// RFC 9112 framing and syntax rules applied to a request head after the parser has split it.
// The sidecar forwards only requests that every HTTP/1.1 implementation reads the same way:
// anything with two possible readings (request smuggling, RFC 9112 §11.2) is refused with 400.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/http/target.hpp"
#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::http {

enum class framing_kind { none, content_length, chunked };
struct framing {
  framing_kind kind = framing_kind::none;
  std::uint64_t length = 0;  // for content_length
};

struct limits {
  std::uint64_t max_header_bytes = 65536;  // request line + fields + CRLFs
  std::uint32_t max_header_count = 100;
  std::uint64_t max_body_bytes = 64ull << 20;
  std::size_t max_request_line = 8192;
};

enum class verdict_code { ok, bad_request, payload_too_large, headers_too_large };

// Which request-target form was used (RFC 9112 §3.2).
enum class target_form { origin, absolute, authority, asterisk };

struct validation {
  verdict_code code = verdict_code::ok;
  std::string detail;  // fixed text, never header values: safe for logs and error bodies
  framing body;
  target_form form = target_form::origin;
  std::optional<parsed_target> absolute;  // the target, parsed, when its form is absolute
  std::optional<host_and_port> host;      // the Host header, parsed, when it is not empty

  bool ok() const { return code == verdict_code::ok; }
};

// version: 10 or 11. The validated body framing is canonical: the proxy must forward the
// body with its own framing (one Content-Length, or chunked), never the client's raw fields.
validation validate_request(std::string_view method, std::string_view target, unsigned version,
                            std::span<const header_view> headers, const limits& lim);

// Whether to answer "100 Continue" before reading the body. RFC 9110 §10.1.1: a server that
// receives 100-continue in an HTTP/1.0 request MUST ignore it (issue 14); other expectations
// are not ours to meet.
bool expects_continue(unsigned version, std::string_view expect_value);

// Deadline for one read of a request body: the idle timeout from `now`, but never past the
// request's total deadline (client.request_timeout_ms), so a slow upload that keeps sending a
// byte per idle period still ends (issue 14).
inline time_point body_read_deadline(time_point now, duration idle, time_point total_deadline) {
  return std::min(now + idle, total_deadline);
}

// Where a request head ends in raw bytes, searched from `from` on (bytes before it were seen):
// a line feed followed by another line end ends the head; one followed by SP or HTAB is
// obs-fold (or whitespace before the first field, RFC 9112 §2.2), which the proxy refuses
// before any parser unfolds it (an upstream that unfolds differently is a smuggling vector).
enum class raw_head { incomplete, complete, obs_fold };
raw_head scan_raw_head(std::string_view bytes, std::size_t from);

// Content-Length value syntax: 1*DIGIT, no sign, no leading zeros (other than "0"), no OWS
// inside, no list. nullopt on bad syntax; UINT64_MAX when it overflows.
std::optional<std::uint64_t> parse_content_length(std::string_view value);

}  // namespace okta_sidecar::http
