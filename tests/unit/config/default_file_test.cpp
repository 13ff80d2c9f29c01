// config/okta-sidecar.json is the documented full default configuration; it must say exactly
// what the binary does without it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "okta_sidecar/config/loader.hpp"

namespace okta_sidecar::config {
namespace {

std::string read_example() {
  // ctest passes the source tree; __FILE__ is only a fallback, since ccache's base_dir makes
  // it relative to the build directory.
  const char* root = std::getenv("OKTA_SIDECAR_SOURCE_DIR");
  const auto path = root ? std::filesystem::path(root) / "config" / "okta-sidecar.json"
                         : std::filesystem::path(__FILE__).parent_path() / ".." / ".." / ".." / "config" /
                               "okta-sidecar.json";
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DefaultConfigFile, ParsesToExactlyTheDefaults) {
  auto r = parse_config(read_example(), "config/okta-sidecar.json");
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg, config{}) << "file:\n"
                             << to_json(r.cfg, secrets::keep).dump(2) << "\ndefaults:\n"
                             << to_json(config{}, secrets::keep).dump(2);
}

TEST(DefaultConfigFile, NamesEveryKeyOutsideFleet) {
  // fleet is null by default, so its keys cannot appear; every other key must be spelled out.
  auto doc = nlohmann::json::parse(read_example());
  for (const std::string& path : known_key_paths()) {
    if (path.starts_with("fleet.")) continue;
    std::string pointer = "/" + path;
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    EXPECT_TRUE(doc.contains(nlohmann::json::json_pointer(pointer))) << path;
  }
}

TEST(DefaultConfigFile, IsValidOnceFinalized) {
  auto r = parse_config(read_example(), "config/okta-sidecar.json");
  finalize(r.cfg);
  EXPECT_THAT(validate(r.cfg), ::testing::IsEmpty());
}

}  // namespace
}  // namespace okta_sidecar::config
