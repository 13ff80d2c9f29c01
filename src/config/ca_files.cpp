#include <filesystem>
#include <system_error>

#include "okta_sidecar/config/loader.hpp"

namespace okta_sidecar::config {

std::vector<std::string> check_ca_files(const config& cfg) {
  // The defaults as finalize() derives them; a path equal to its default may be created.
  config defaults_of_state_dir;
  defaults_of_state_dir.state_dir = cfg.state_dir;

  finalize(defaults_of_state_dir);

  std::vector<std::string> errors;
  if (cfg.ca.create_if_missing) return errors;
  auto check = [&](const char* key, const std::string& file, const std::string& derived) {
    if (file.empty() || file == derived) return;
    std::error_code ec;
    const bool exists = std::filesystem::exists(file, ec);
    if (ec) {
      errors.push_back(std::string(key) + ": \"" + file + "\" cannot be checked (" + ec.message() + ")");
    } else if (!exists) {
      errors.push_back(std::string(key) + ": \"" + file +
                       "\" does not exist (a CA is created only at the default " + derived +
                       "; remove the key to use it, create the file, or set ca.create_if_missing)");
    }
  };
  check("ca.cert_file", cfg.ca.cert_file, defaults_of_state_dir.ca.cert_file);
  check("ca.key_file", cfg.ca.key_file, defaults_of_state_dir.ca.key_file);
  return errors;
}

}  // namespace okta_sidecar::config
