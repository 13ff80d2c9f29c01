#include "okta_sidecar/config/config.hpp"

namespace okta_sidecar::config {

std::string endpoint::to_string() const {
  // RFC 3986 section 3.2.2: an IPv6 literal in an authority is enclosed in brackets.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace okta_sidecar::config
