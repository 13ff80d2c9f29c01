#include "okta_sidecar/tls/fingerprint_key.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
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

namespace {

// HMAC() looks the algorithm up and builds a context on every call: OpenSSL 3 spends about
// 20,000 instructions on a 40-byte token, and every request with a token took two. A context
// per thread, keyed once and reset for each digest, costs a fraction of that.
struct thread_hmac {
  EVP_MAC_CTX* ctx = nullptr;
  std::array<std::uint8_t, 32> key{};  // the key ctx holds (a test makes several fingerprint_keys)
  thread_hmac() = default;
  thread_hmac(const thread_hmac&) = delete;
  thread_hmac& operator=(const thread_hmac&) = delete;
  ~thread_hmac() { EVP_MAC_CTX_free(ctx); }

  bool start(const std::array<std::uint8_t, 32>& k) {
    if (ctx != nullptr && key == k) return EVP_MAC_init(ctx, nullptr, 0, nullptr) == 1;  // same key
    static EVP_MAC* const hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);                // for the process
    if (ctx == nullptr && hmac != nullptr) ctx = EVP_MAC_CTX_new(hmac);
    if (ctx == nullptr) return false;
    char sha256[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256, 0),
                                 OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(ctx, k.data(), k.size(), params) != 1) return false;
    key = k;
    return true;
  }
  void forget() {  // after a failure: the next digest starts from a new context
    EVP_MAC_CTX_free(ctx);
    ctx = nullptr;
  }
};

}  // namespace

std::array<std::uint8_t, 32> fingerprint_key::digest(std::string_view data) const {
  thread_local thread_hmac h;
  std::array<std::uint8_t, 32> out{};
  std::size_t len = 0;
  static const unsigned char empty = 0;
  const auto* p = data.empty() ? &empty : reinterpret_cast<const unsigned char*>(data.data());
  if (!h.start(key_) || EVP_MAC_update(h.ctx, p, data.size()) != 1 ||
      EVP_MAC_final(h.ctx, out.data(), &len, out.size()) != 1 || len != out.size()) {
    detail::take_openssl_error();
    h.forget();
    out.fill(0);
  }
  return out;
}

}  // namespace okta_sidecar::tls
