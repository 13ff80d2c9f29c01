// Fuzzes destination policy, the address guard, CIDR lists and proxy auth: no crash, host
// normalisation is idempotent, and nothing outside the configured lists is ever routed.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "okta_sidecar/http/ip_literal.hpp"
#include "okta_sidecar/http/target.hpp"
#include "okta_sidecar/policy/address_guard.hpp"
#include "okta_sidecar/policy/cidr.hpp"
#include "okta_sidecar/policy/host_policy.hpp"
#include "okta_sidecar/policy/proxy_auth.hpp"

using namespace okta_sidecar;
using namespace okta_sidecar::policy;

namespace {

void require(bool condition) {
  if (!condition) __builtin_trap();
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const host_policy policy({"*.okta.com", "*.oktapreview.com"}, {"github.com:443"}, {443, 80});
  static const cidr_list clients = cidr_list::parse({"10.0.0.0/8", "2001:db8::/32"});
  static const proxy_auth auth = proxy_auth::from_lines("alice:s3cret\nbob:pw");

  if (size < 2) return 0;
  const std::uint16_t port = static_cast<std::uint16_t>(data[0] << 8 | data[1]);
  const std::string_view host(reinterpret_cast<const char*>(data + 2), size - 2);

  if (const auto norm = host_policy::normalize_host(host)) {
    require(!norm->empty());
    require(host_policy::normalize_host(*norm) == norm);
  }
  const decision d = policy.decide(host, port);
  const auto norm = host_policy::normalize_host(host);
  switch (d.r) {
    case route::intercept:
      require(norm && (ends_with(*norm, ".okta.com") || ends_with(*norm, ".oktapreview.com")));
      require(port == 443 || port == 80);
      break;
    case route::tunnel:
      require(norm && *norm == "github.com" && port == 443);
      break;
    case route::refuse:
      require(!d.why.empty());
      break;
  }

  (void)is_forbidden_destination(host);
  (void)clients.contains(host);
  (void)http::parse_authority(host);
  (void)http::parse_absolute_form(host);
  (void)http::parse_host_header(host);

  if (auth.check(host)) {
    const auto sp = host.find_last_of(' ');
    const auto decoded = decode_base64(host.substr(sp + 1));
    require(decoded && (*decoded == "alice:s3cret" || *decoded == "bob:pw"));
  }

  // Config-time parsers may throw, but only std::runtime_error, and what they accept is sane.
  const std::string entry(host);
  try {
    const auto l = cidr_list::parse({entry});
    const auto slash = entry.find('/');
    if (slash == std::string::npos) require(l.contains(entry));
  } catch (const std::runtime_error&) {
  }
  try {
    const host_policy p({entry}, {}, {443});
    (void)p.decide(host, port);
  } catch (const std::runtime_error&) {
  }
  try {
    (void)proxy_auth::from_lines(host);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
