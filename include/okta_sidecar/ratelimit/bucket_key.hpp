#pragma once
// Identity of one rate-limit bucket instance: Okta keeps budgets per org (tenant host) and per
// endpoint group, so the same group on two tenants is two independent budgets.
#include <compare>
#include <string>

namespace okta_sidecar::ratelimit {

// (tenant host, bucket name from the classifier table).
struct bucket_key {
  std::string host;
  std::string bucket;

  auto operator<=>(const bucket_key&) const = default;
};

}  // namespace okta_sidecar::ratelimit
