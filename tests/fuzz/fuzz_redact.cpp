// Fuzzes the redaction layer: no input may crash it, and a credential planted in any known form
// next to arbitrary text must never survive into the output.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "okta_sidecar/http/redact.hpp"

using namespace okta_sidecar::http;

namespace {

void require(bool condition) {
  if (!condition) __builtin_trap();
}

constexpr std::string_view secret = "Zq7XsEcReTv4lUe9Kp";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)redact_text(input);
  (void)redact_target(input);
  (void)is_secret_header(input);
  (void)is_secret_param(input);
  if (input.find(secret) != std::string_view::npos) return 0;

  static const std::string_view forms[] = {"SSWS ",
                                           "Bearer ",
                                           "Authorization: ",
                                           "Cookie: a=",
                                           "client_secret=",
                                           "password: ",
                                           "\"access_token\":\"",
                                           "\"password\" : ",
                                           "x-api-key: Basic "};
  const std::string text(input);
  for (auto form : forms) {
    const std::string line = text + "\n" + std::string(form) + std::string(secret) + "\n" + text;
    require(redact_text(line).find(secret) == std::string::npos);
  }
  const std::string target = "/p?" + text + "&client_secret=" + std::string(secret) + "&" + text;
  require(redact_target(target).find(secret) == std::string::npos);
  return 0;
}
