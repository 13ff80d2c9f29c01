// Fuzzes the endpoint classifier and path normalisation with the shipped table: any method and
// target classify to some bucket without crashing, normalisation is idempotent, and the query
// string never changes the answer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "okta_sidecar/ratelimit/classifier.hpp"
#include "okta_sidecar/ratelimit/path.hpp"

namespace {
void require(bool condition) {
  if (!condition) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace okta_sidecar::ratelimit;
  static const classifier table = classifier::builtin();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto space = text.find(' ');
  const std::string_view method = space == std::string_view::npos ? "GET" : text.substr(0, space);
  const std::string_view target = space == std::string_view::npos ? text : text.substr(space + 1);
  const auto c = table.classify(method, target);
  require(!c.group.empty() && !c.bucket.empty());
  const auto n = normalize_path(target);
  require(normalize_path(n) == n);
  if (target.find('?') == std::string_view::npos && target.find('#') == std::string_view::npos) {
    require(table.classify(method, std::string(target) + "?limit=200&after=x") == c);
  }
  return 0;
}
