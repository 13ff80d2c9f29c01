#include "okta_sidecar/http/request_validator.hpp"

#include <cstring>
#include <limits>
#include <optional>

#include "okta_sidecar/http/target.hpp"

namespace okta_sidecar::http {

namespace {

validation fail(verdict_code code, std::string detail) {
  validation v;
  v.code = code;
  v.detail = std::move(detail);
  return v;
}

// field-value (RFC 9110 §5.5): VCHAR, obs-text, SP, HTAB. CR, LF, NUL and other CTLs are
// refused outright (§5.5 allows replacing them with SP; refusing is the safer reading).
enum class value_fault { none, obs_fold, bare_cr_lf, nul, ctl };
value_fault check_value(std::string_view value) {
  if (is_field_value(value)) return value_fault::none;  // the common case, eight bytes at a time
  for (std::size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if ((c >= 0x20 && c != 0x7f) || c == '\t') continue;  // VCHAR, obs-text, SP, HTAB
    if (c == '\r' || c == '\n') {
      // A line break followed by whitespace is obs-fold (RFC 9112 §5.2): refused with 400.
      std::size_t j = i + 1;
      if (c == '\r' && j < value.size() && value[j] == '\n') ++j;
      if (j < value.size() && is_ows(value[j])) return value_fault::obs_fold;
      return value_fault::bare_cr_lf;
    }
    return c == 0 ? value_fault::nul : value_fault::ctl;
  }
  return value_fault::none;
}

const char* describe(value_fault f) {
  switch (f) {
    case value_fault::obs_fold:
      return "obsolete line folding in a header value";
    case value_fault::bare_cr_lf:
      return "CR or LF in a header value";
    case value_fault::nul:
      return "NUL byte in a header value";
    case value_fault::ctl:
      return "control character in a header value";
    case value_fault::none:
      break;
  }
  return "";
}

}  // namespace

std::optional<std::uint64_t> parse_content_length(std::string_view value) {
  if (value.empty() || (value.size() > 1 && value[0] == '0')) return std::nullopt;
  std::uint64_t n = 0;
  bool overflow = false;
  for (char c : value) {
    if (!is_digit(c)) return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (n > (std::numeric_limits<std::uint64_t>::max() - d) / 10) overflow = true;
    if (!overflow) n = n * 10 + d;
  }
  return overflow ? std::numeric_limits<std::uint64_t>::max() : n;
}

validation validate_request(std::string_view method, std::string_view target, unsigned version,
                            std::span<const header_view> headers, const limits& lim) {
  // Size limits first: they are cheap and bound the work below.
  // "METHOD SP target SP HTTP/1.1" without CRLF.
  const std::uint64_t request_line = method.size() + 1 + target.size() + 1 + 8;
  if (request_line > lim.max_request_line)
    return fail(verdict_code::headers_too_large, "request line too long");
  if (headers.size() > lim.max_header_count)
    return fail(verdict_code::headers_too_large, "too many header fields");
  std::uint64_t head_bytes = request_line + 2 + 2;
  for (const auto& [name, value] : headers) head_bytes += name.size() + 2 + value.size() + 2;
  if (head_bytes > lim.max_header_bytes)
    return fail(verdict_code::headers_too_large, "request head too large");

  if (!is_token(method)) return fail(verdict_code::bad_request, "invalid method");
  if (version != 10 && version != 11) return fail(verdict_code::bad_request, "unsupported HTTP version");

  validation out;
  const bool connect = method == "CONNECT";
  if (connect) {
    if (!parse_authority(target)) return fail(verdict_code::bad_request, "CONNECT target must be host:port");
    out.form = target_form::authority;
  } else if (target == "*") {
    // RFC 9112 §3.2.4: asterisk-form is for OPTIONS only.
    if (method != "OPTIONS") return fail(verdict_code::bad_request, "asterisk-form target outside OPTIONS");
    out.form = target_form::asterisk;
  } else if (!target.empty() && target[0] == '/') {
    if (!is_valid_origin_form(target)) return fail(verdict_code::bad_request, "invalid request target");
    out.form = target_form::origin;
  } else {
    out.absolute = parse_absolute_form(target);
    if (!out.absolute) return fail(verdict_code::bad_request, "invalid request target");
    out.form = target_form::absolute;
  }

  std::size_t host_count = 0;
  std::size_t cl_count = 0;
  std::optional<std::uint64_t> content_length;
  std::size_t te_count = 0;
  bool te_is_chunked = false;
  for (const auto& [name, value] : headers) {
    if (name.empty()) return fail(verdict_code::bad_request, "empty header name");
    if (!is_token(name)) {
      // Covers "Content-Length " and " Host" (leading whitespace is how obs-fold shows up
      // when a parser hands the continuation line over as a field of its own).
      if (is_ows(name.front())) return fail(verdict_code::bad_request, "obsolete line folding");
      return fail(verdict_code::bad_request, "invalid character in a header name");
    }
    if (const auto fault = check_value(value); fault != value_fault::none)
      return fail(verdict_code::bad_request, describe(fault));
    const std::string_view v = trim_ows(value);
    if (iequals(name, "host")) {
      ++host_count;
      if (out.absolute && v == absolute_form_authority(target)) {
        // The target's authority again, byte for byte (the usual case): parsed once.
        const auto& t = *out.absolute;
        out.host = host_and_port{t.host, t.explicit_port ? std::optional(t.port) : std::nullopt};
      } else if (!v.empty()) {
        out.host = parse_host_header(v);
        if (!out.host) return fail(verdict_code::bad_request, "invalid Host header");
      }
    } else if (iequals(name, "content-length")) {
      // Strict RFC 9110 §8.6 reading: a second Content-Length, even an identical one, or a
      // list value is refused, so no hop can pick a different length than we do.
      if (++cl_count > 1) return fail(verdict_code::bad_request, "more than one Content-Length");
      if (v.find(',') != std::string_view::npos)
        return fail(verdict_code::bad_request, "Content-Length is a list");
      content_length = parse_content_length(v);
      if (!content_length) return fail(verdict_code::bad_request, "invalid Content-Length");
    } else if (iequals(name, "transfer-encoding")) {
      // Only a single, final "chunked" is accepted: we would have to decode any other coding
      // to find the body's end, and "gzip, chunked" bodies are never sent to Okta's API.
      ++te_count;
      te_is_chunked = iequals(v, "chunked");
    }
  }

  if (version == 11 && host_count == 0) return fail(verdict_code::bad_request, "missing Host header");
  if (host_count > 1) return fail(verdict_code::bad_request, "more than one Host header");
  if (te_count > 0) {
    if (version == 10)  // RFC 9112 §6.1: faulty framing in HTTP/1.0
      return fail(verdict_code::bad_request, "Transfer-Encoding in an HTTP/1.0 request");
    if (cl_count > 0)  // RFC 9112 §6.1: the classic smuggling vector; never forward it
      return fail(verdict_code::bad_request, "both Content-Length and Transfer-Encoding");
    if (te_count > 1) return fail(verdict_code::bad_request, "more than one Transfer-Encoding");
    if (!te_is_chunked) return fail(verdict_code::bad_request, "unsupported Transfer-Encoding");
    if (connect) return fail(verdict_code::bad_request, "CONNECT with a body");
    out.body.kind = framing_kind::chunked;
  } else if (content_length) {
    if (connect && *content_length != 0) return fail(verdict_code::bad_request, "CONNECT with a body");
    if (*content_length > lim.max_body_bytes)
      return fail(verdict_code::payload_too_large, "Content-Length exceeds the body limit");
    out.body.kind = framing_kind::content_length;
    out.body.length = *content_length;
  }
  return out;
}

raw_head scan_raw_head(std::string_view b, std::size_t from) {
  while (from + 1 < b.size()) {  // each line feed with the byte after it; memchr finds them
    const auto* lf = static_cast<const char*>(std::memchr(b.data() + from, '\n', b.size() - 1 - from));
    if (lf == nullptr) break;
    const char next = lf[1];
    if (next == '\r' || next == '\n') return raw_head::complete;
    if (next == ' ' || next == '\t') return raw_head::obs_fold;
    from = static_cast<std::size_t>(lf - b.data()) + 1;
  }
  return raw_head::incomplete;
}

bool expects_continue(unsigned version, std::string_view expect_value) {
  if (version < 11) return false;
  while (!expect_value.empty() && (expect_value.front() == ' ' || expect_value.front() == '\t'))
    expect_value.remove_prefix(1);
  while (!expect_value.empty() && (expect_value.back() == ' ' || expect_value.back() == '\t'))
    expect_value.remove_suffix(1);
  constexpr std::string_view want = "100-continue";
  if (expect_value.size() != want.size()) return false;
  for (std::size_t i = 0; i < want.size(); ++i) {
    char ch = expect_value[i];
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    if (ch != want[i]) return false;
  }
  return true;
}

}  // namespace okta_sidecar::http
