#pragma once
// The last N auth diagnoses, kept for /status and the dashboard; shared by every session.
#include <cstddef>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>

namespace okta_sidecar::auth {

// The last N auth diagnoses, for /status and the dashboard.
class diagnosis_log {
 public:
  explicit diagnosis_log(std::size_t capacity = 50) : capacity_(capacity) {}
  void add(nlohmann::json entry);
  nlohmann::json snapshot() const;  // newest first

 private:
  mutable std::mutex mu_;
  std::size_t capacity_;
  std::deque<nlohmann::json> entries_;
};

}  // namespace okta_sidecar::auth
