#pragma once
// The per-install secret that keys token fingerprints (issue 14): a fingerprint in a log or on
// /status is HMAC-SHA-256(key, credential), so nobody without the key can confirm a guessed
// token (or a password pasted into an Authorization header) against it offline. The key is 32
// random bytes in <state_dir>/fingerprint.key, mode 0600, created on first start.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace okta_sidecar::tls {

// Loaded (or created) once at start-up; digest() is thread-safe.
class fingerprint_key {
 public:
  // Reads <state_dir>/fingerprint.key under the same rules as the CA key (owner, mode, no
  // symbolic link) or creates it (O_EXCL, 0600) with the state directory (0700). Throws
  // std::runtime_error naming the file and the fix.
  static fingerprint_key load_or_create(const std::string& state_dir);

  // HMAC-SHA-256 of `data` under the key (OpenSSL).
  std::array<std::uint8_t, 32> digest(std::string_view data) const;

  static constexpr std::string_view file_name = "fingerprint.key";

 private:
  explicit fingerprint_key(std::array<std::uint8_t, 32> key) : key_(key) {}
  std::array<std::uint8_t, 32> key_;
};

}  // namespace okta_sidecar::tls
