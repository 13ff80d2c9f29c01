// Fuzzes the request-head validator and the target/hop-by-hop helpers with heads split the way
// a parser would, and checks the promises the proxy relies on: an accepted request has exactly
// one reading of its framing, clean field syntax, and a target that round-trips.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/http/hop_by_hop.hpp"
#include "okta_sidecar/http/redact.hpp"
#include "okta_sidecar/http/request_validator.hpp"
#include "okta_sidecar/http/target.hpp"

using namespace okta_sidecar::http;

namespace {

void require(bool condition) {
  if (!condition) __builtin_trap();
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (;;) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto lines = split_lines(input);

  // Request line: METHOD SP target SP version.
  std::string_view request_line = lines[0];
  const auto sp1 = request_line.find(' ');
  const std::string_view method = request_line.substr(0, sp1);
  std::string_view rest = sp1 == std::string_view::npos ? std::string_view{} : request_line.substr(sp1 + 1);
  const auto sp2 = rest.rfind(' ');
  const std::string_view target = rest.substr(0, sp2);
  const std::string_view version_text =
      sp2 == std::string_view::npos ? std::string_view{} : rest.substr(sp2 + 1);
  const unsigned version = version_text == "HTTP/1.1" ? 11 : version_text == "HTTP/1.0" ? 10 : 9;

  std::vector<header_view> headers;
  for (std::size_t i = 1; i < lines.size() && !lines[i].empty(); ++i) {
    const auto colon = lines[i].find(':');
    headers.emplace_back(lines[i].substr(0, colon),
                         colon == std::string_view::npos ? std::string_view{} : lines[i].substr(colon + 1));
  }

  limits lim;
  lim.max_header_bytes = 2048;
  lim.max_header_count = 16;
  lim.max_body_bytes = 1000;
  lim.max_request_line = 512;
  const validation v = validate_request(method, target, version, headers, lim);

  if (v.ok()) {
    std::size_t hosts = 0, cls = 0, tes = 0;
    for (const auto& [name, value] : headers) {
      require(is_token(name));
      for (char c : value) require(c != '\r' && c != '\n' && c != '\0');
      if (iequals(name, "host")) ++hosts;
      if (iequals(name, "content-length")) ++cls;
      if (iequals(name, "transfer-encoding")) ++tes;
    }
    require(hosts <= 1 && (version == 10 || hosts == 1));
    require(cls + tes <= 1);  // never both, never repeated
    require(headers.size() <= lim.max_header_count);
    switch (v.body.kind) {
      case framing_kind::chunked:
        require(tes == 1 && version == 11);
        break;
      case framing_kind::content_length:
        require(cls == 1 && v.body.length <= lim.max_body_bytes);
        break;
      case framing_kind::none:
        require(cls == 0 && tes == 0);
        break;
    }
    switch (v.form) {
      case target_form::absolute: {
        const auto t = parse_absolute_form(target);
        require(t.has_value());
        // Round trip: the parsed pieces rebuild a target that parses to the same thing.
        const bool v6 = t->host.find(':') != std::string::npos;
        const std::string rebuilt = t->scheme + "://" + (v6 ? "[" + t->host + "]" : t->host) + ":" +
                                    std::to_string(t->port) + t->path_and_query;
        auto named = *t;
        named.explicit_port = true;  // the rebuilt target always names its port
        require(parse_absolute_form(rebuilt) == named);
        require(is_valid_origin_form(t->path_and_query));
        for (const auto& [name, value] : headers)
          if (iequals(name, "host")) (void)host_header_matches(value, *t);
        break;
      }
      case target_form::authority:
        require(method == "CONNECT" && parse_authority(target).has_value());
        break;
      case target_form::origin:
        require(is_valid_origin_form(target));
        break;
      case target_form::asterisk:
        require(target == "*" && method == "OPTIONS");
        break;
    }
  } else {
    require(!v.detail.empty());
  }

  const auto hop = hop_by_hop_names(headers);
  for (const auto& name : hop) require(name != "host" && name != "content-length" && !name.empty());
  (void)wants_close(version, headers);
  (void)redact_target(target);
  return 0;
}
