#pragma once
// Source-address ranges (access.allowed_clients): the CIDR syntax, parsed here for the config
// loader and the runtime alike, and the allow-list built from it.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/http/ip_literal.hpp"

namespace okta_sidecar::policy {

// An IPv4 or IPv6 range; a bare address means /32 or /128.
struct cidr {
  http::ip_literal network;  // no bits set after the prefix
  unsigned prefix = 0;

  bool operator==(const cidr&) const = default;
  // IPv4-mapped IPv6 clients (::ffff:a.b.c.d, as dual-stack listeners report IPv4 peers) match
  // IPv4 ranges, and a v4-mapped range (::ffff:10.0.0.0/104) matches plain IPv4 clients.
  bool contains(const http::ip_literal& address) const;
};

// "10.0.0.0/8", "fd00::/8", "192.168.1.7": an address as http::parse_ip reads it (no zone id)
// and an optional decimal prefix length without leading zeros. Address bits after the prefix
// are refused: "10.0.0.1/8" is almost always a typo, and the phrase says what was meant.
// nullopt for anything else, and then, when `why` is given, a phrase saying what is wrong,
// written to follow the quoted entry ("has prefix length /33; ...").
std::optional<cidr> parse_cidr(std::string_view text, std::string* why = nullptr);

// A list of ranges (access.allowed_clients).
class cidr_list {
 public:
  // Throws std::runtime_error naming the bad entry and what is wrong with it.
  static cidr_list parse(const std::vector<std::string>& entries);

  bool empty() const { return ranges_.empty(); }
  // Unparseable text matches nothing.
  bool contains(std::string_view ip_text) const;

 private:
  std::vector<cidr> ranges_;
};

}  // namespace okta_sidecar::policy
