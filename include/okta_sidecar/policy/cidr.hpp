#pragma once
// Source-address allow-list (access.allowed_clients).
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/http/ip_literal.hpp"

namespace okta_sidecar::policy {

// A list of IPv4/IPv6 CIDR ranges; a bare address means /32 or /128. Host bits after the
// prefix are ignored ("10.1.2.3/8" = 10.0.0.0/8).
class cidr_list {
 public:
  // Throws std::runtime_error naming the bad entry and what is wrong with it.
  static cidr_list parse(const std::vector<std::string>& entries);

  bool empty() const { return ranges_.empty(); }
  // IPv4-mapped IPv6 clients (::ffff:a.b.c.d, as dual-stack listeners report IPv4 peers) match
  // IPv4 ranges. Unparseable text matches nothing.
  bool contains(std::string_view ip_text) const;

 private:
  struct range {
    http::ip_literal network;
    unsigned prefix = 0;
  };
  std::vector<range> ranges_;
};

}  // namespace okta_sidecar::policy
