#pragma once
// Addresses a DNS answer must not lead to unless explicitly allowed
// (access.allow_private_destinations): an allowed name that resolves to the cloud metadata
// service or to a pod-local service would turn the sidecar into an SSRF pivot.
#include <string_view>

namespace okta_sidecar::policy {

// True for loopback, unspecified, "this network" 0/8, link-local (169.254/16 incl. metadata
// 169.254.169.254, fe80::/10), private (10/8, 172.16/12, 192.168/16, fc00::/7 incl. AWS's
// fd00:ec2::254), CGNAT 100.64/10 (Alibaba's metadata 100.100.100.200), multicast, reserved
// 240/4 and broadcast, deprecated site-local fec0::/10, and IPv4 addresses embedded in IPv6
// (v4-mapped, v4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16) that fall in those ranges.
// Unparseable text is forbidden (fail closed). `ip_text` is IPv4/IPv6 as Asio prints it,
// possibly with a %zone.
bool is_forbidden_destination(std::string_view ip_text);

}  // namespace okta_sidecar::policy
