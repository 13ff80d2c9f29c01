// Fuzzes the configuration loader: any text must produce either a config or a list of errors
// (never a crash or an exception), a config that parses without errors must validate without
// throwing, and every error must name where it is.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "okta_sidecar/config/loader.hpp"

namespace {
void require(bool condition) {
  if (!condition) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace okta_sidecar::config;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = parse_config(text, "fuzz.json");
  for (const auto& e : r.errors) require(!e.empty() && e.find(':') != std::string::npos);
  if (r.ok()) {
    finalize(r.cfg);
    for (const auto& e : validate(r.cfg)) require(!e.empty());
    // What we accepted must round-trip through the file format unchanged.
    auto again = parse_config(to_json(r.cfg, secrets::keep).dump(), "roundtrip.json");
    require(again.ok());
  }
  return 0;
}
