// okta-sidecar: parses the command line, builds the configuration, runs the app.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string_view>
#include <vector>

#include "okta_sidecar/app/app.hpp"
#include "okta_sidecar/config/cli.hpp"
#include "okta_sidecar/proxy/runtime.hpp"

namespace {

std::optional<std::string> from_env(std::string_view name) {
  if (const char* v = std::getenv(std::string(name).c_str())) return std::string(v);
  return std::nullopt;
}

int report(const std::vector<std::string>& errors) {
  for (const auto& e : errors) std::cerr << "okta-sidecar: " << e << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace okta_sidecar;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto cli = config::parse_cli(args);
  if (!cli.errors.empty()) {
    report(cli.errors);
    std::cerr << config::usage_text();
    return 2;
  }
  if (cli.options.help) {
    std::cout << config::usage_text();
    return 0;
  }
  if (cli.options.version) {
    std::cout << "okta-sidecar " << app::version << "\n";
    return 0;
  }
  auto built = config::build_config(cli.options, from_env);
  if (!built.ok()) return report(built.errors);
  try {
    proxy::runtime::build(built.cfg);  // tables and files named by the config
  } catch (const std::exception& e) {
    return report({e.what()});
  }
  if (auto missing = config::check_ca_files(built.cfg); !missing.empty()) return report(missing);
  if (cli.options.print_config) {
    std::cout << config::to_json(built.cfg, config::secrets::redact).dump(2) << "\n";
    return 0;
  }
  if (cli.options.check_config) {
    std::cout << "configuration OK\n";
    return 0;
  }
  const auto fmt = built.cfg.log.format == "text" ? logging::format::text : logging::format::json;
  logging::log log(logging::make_logger(built.cfg.log.level, fmt), fmt);
  auto options = cli.options;
  return app::run(built.cfg, log, [options] { return config::build_config(options, from_env); });
}
