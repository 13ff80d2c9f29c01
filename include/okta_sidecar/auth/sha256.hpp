#pragma once
// SHA-256 (FIPS 180-4) for token fingerprints and caller keys. Pure code of our own so the
// functional core stays free of OpenSSL; not meant for anything security-critical beyond
// "a short, irreversible name for a secret".
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace okta_sidecar::auth {

using sha256_digest = std::array<std::uint8_t, 32>;

// Incremental hasher: update() any number of times, then finish() once.
class sha256 {
 public:
  sha256();
  void update(std::string_view data);
  sha256_digest finish();

 private:
  void compress(const std::uint8_t* block);

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

sha256_digest sha256_of(std::string_view data);
std::string to_hex(const sha256_digest& digest);  // 64 lowercase hex digits

}  // namespace okta_sidecar::auth
