#include "okta_sidecar/auth/diagnosis_log.hpp"

#include <utility>

namespace okta_sidecar::auth {

void diagnosis_log::add(nlohmann::json entry) {
  std::lock_guard lock(mu_);
  entries_.push_back(std::move(entry));
  while (entries_.size() > capacity_) entries_.pop_front();
}

nlohmann::json diagnosis_log::snapshot() const {
  std::lock_guard lock(mu_);
  auto out = nlohmann::json::array();
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) out.push_back(*it);
  return out;
}

}  // namespace okta_sidecar::auth
