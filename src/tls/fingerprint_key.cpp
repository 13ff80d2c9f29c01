#include "okta_sidecar/tls/fingerprint_key.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "openssl_util.hpp"
#include "secure_file.hpp"

namespace okta_sidecar::tls {
namespace {

constexpr std::string_view hex_digits = "0123456789abcdef";

std::string to_hex(const std::array<std::uint8_t, 32>& b) {
  std::string out;
  for (const auto v : b) {
    out += hex_digits[v >> 4];
    out += hex_digits[v & 15];
  }
  return out;
}

bool from_hex(std::string_view text, std::array<std::uint8_t, 32>& out) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    const auto hi = hex_digits.find(text[2 * i]);
    const auto lo = hex_digits.find(text[2 * i + 1]);
    if (hi == std::string_view::npos || lo == std::string_view::npos) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

}  // namespace

fingerprint_key fingerprint_key::load_or_create(const std::string& state_dir) {
  const std::string key = "state_dir";
  const std::string file = state_dir.empty() || state_dir.back() == '/'
                               ? state_dir + std::string(file_name)
                               : state_dir + "/" + std::string(file_name);
  std::array<std::uint8_t, 32> bytes{};
  if (detail::file_exists(key, file)) {
    if (!from_hex(detail::read_private_file(key, file), bytes)) {
      throw std::runtime_error(key + " " + file +
                               ": is not 64 hex digits; remove it to have a new key made (fingerprints in "
                               "earlier logs will no longer match)");
    }
    return fingerprint_key(bytes);
  }
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("cannot draw a random fingerprint key: " + detail::take_openssl_error());
  }
  detail::make_private_directory(key, state_dir);
  detail::write_new_file(key, file, to_hex(bytes) + "\n", 0600);
  return fingerprint_key(bytes);
}

std::array<std::uint8_t, 32> fingerprint_key::digest(std::string_view data) const {
  std::array<std::uint8_t, 32> out{};
  unsigned int len = 0;
  // HMAC() with a null output context is thread-safe and allocates nothing of ours.
  static const unsigned char empty = 0;
  const auto* p = data.empty() ? &empty : reinterpret_cast<const unsigned char*>(data.data());
  if (HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), p, data.size(), out.data(), &len) ==
          nullptr ||
      len != out.size()) {
    detail::take_openssl_error();
    out.fill(0);
  }
  return out;
}

}  // namespace okta_sidecar::tls
