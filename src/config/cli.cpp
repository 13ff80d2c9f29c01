#include "okta_sidecar/config/cli.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace okta_sidecar::config {
namespace {

struct flag {
  std::string_view name;
  std::string_view metavar;  // empty for switches
  std::optional<std::string> cli_options::*value;
  bool cli_options::*toggle;
};

constexpr std::array<flag, 10> flags{{
    {"--config", "FILE", &cli_options::config_file, nullptr},
    {"--listen", "HOST:PORT", &cli_options::listen, nullptr},
    {"--admin-listen", "HOST:PORT", &cli_options::admin_listen, nullptr},
    {"--state-dir", "DIR", &cli_options::state_dir, nullptr},
    {"--log-level", "LEVEL", &cli_options::log_level, nullptr},
    {"--log-format", "FORMAT", &cli_options::log_format, nullptr},
    {"--check-config", "", nullptr, &cli_options::check_config},
    {"--print-config", "", nullptr, &cli_options::print_config},
    {"--version", "", nullptr, &cli_options::version},
    {"--help", "", nullptr, &cli_options::help},
}};

constexpr std::array<std::string_view, 5> log_levels{"trace", "debug", "info", "warn", "error"};
constexpr std::array<std::string_view, 2> log_formats{"json", "text"};

// A config file is a few KiB; the cap keeps a mistaken --config /dev/zero from eating memory.
constexpr std::size_t max_config_bytes = 16 * 1024 * 1024;

std::string quote_json(std::string_view s) { return nlohmann::json(std::string(s)).dump(); }

std::optional<std::string> read_file(const std::string& path, std::string& error) {
  std::error_code ec;
  // Directories open "successfully" on Linux and then fail to read; say what is wrong instead.
  if (std::filesystem::is_directory(path, ec)) {
    error = "is a directory";
    return std::nullopt;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  std::array<char, 64 * 1024> buf;
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_config_bytes) {
      error = "is larger than 16 MiB";
      return std::nullopt;
    }
  }
  if (in.bad()) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  return text;
}

template <std::size_t N>
std::optional<std::string> check_choice(std::string_view value,
                                        const std::array<std::string_view, N>& allowed) {
  for (std::string_view a : allowed) {
    if (a == value) return std::nullopt;
  }
  std::string list;
  for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  std::string msg = quote_json(value) + " is not one of " + list;
  if (auto near = closest_match(value, allowed)) msg += " (did you mean " + quote_json(*near) + "?)";
  return msg;
}

}  // namespace

cli_result parse_cli(std::span<const std::string_view> args) {
  cli_result r;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "-h") {
      r.options.help = true;
      continue;
    }
    if (!arg.starts_with("--")) {
      r.errors.push_back(quote_json(arg) + ": unexpected argument (options start with --; see --help)");
      continue;
    }
    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const flag* f = nullptr;
    for (const flag& candidate : flags) {
      if (candidate.name == name) f = &candidate;
    }
    if (f == nullptr) {
      std::vector<std::string_view> names;
      for (const flag& candidate : flags) names.push_back(candidate.name);
      std::string msg = std::string(name) + ": unknown option";
      if (auto near = closest_match(name, names)) {
        msg += " (did you mean " + *near + "?)";
        // "--lissten 0.0.0.0:1" is one mistake, not two: the value belongs to the typo.
        auto meant = std::find_if(flags.begin(), flags.end(), [&](const flag& c) { return c.name == *near; });
        if (!meant->metavar.empty() && !inline_value && i + 1 < args.size() &&
            !args[i + 1].starts_with("--")) {
          ++i;
        }
      }
      r.errors.push_back(msg + "; see --help");
      continue;
    }
    if (f->toggle != nullptr) {
      if (inline_value) {
        r.errors.push_back(std::string(name) + ": takes no value, got " + quote_json(*inline_value));
        continue;
      }
      r.options.*(f->toggle) = true;
      continue;
    }
    std::string_view value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else {
      r.errors.push_back(std::string(name) + ": missing value (expected " + std::string(name) + " " +
                         std::string(f->metavar) + ")");
      continue;
    }
    if (value.empty()) {
      r.errors.push_back(std::string(name) + ": empty value (expected " + std::string(name) + " " +
                         std::string(f->metavar) + ")");
      continue;
    }
    r.options.*(f->value) = std::string(value);
  }
  return r;
}

cli_result parse_cli(int argc, const char* const* argv) {
  std::vector<std::string_view> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return parse_cli(std::span<const std::string_view>(args));
}

std::string usage_text() {
  const config d;
  std::string u = "Usage: okta-sidecar [OPTIONS]\n\n";
  u += "A local forward proxy that keeps Okta API clients within their rate limits.\n\n";
  u += "Options:\n";
  u += "  --config FILE             JSON configuration file (default: built-in defaults)\n";
  u += "  --listen HOST:PORT        proxy listener (default " + d.listen.to_string() + ")\n";
  u += "  --admin-listen HOST:PORT  health, metrics and dashboard (default " + d.admin_listen.to_string() +
       ")\n";
  u += "  --state-dir DIR           where the local CA is kept (default " + d.state_dir + ")\n";
  u += "  --log-level LEVEL         trace, debug, info, warn or error (default " + d.log.level + ")\n";
  u += "  --log-format FORMAT       json or text (default " + d.log.format + ")\n";
  u += "  --check-config            validate the configuration, print every error, exit\n";
  u += "  --print-config            print the effective configuration (defaults filled in,\n";
  u += "                            secrets redacted) as JSON and exit\n";
  u += "  --version                 print the version and exit\n";
  u += "  -h, --help                print this help and exit\n";
  u += "Options also accept --name=value.\n\n";
  u += "Environment (same meaning as the option; an empty variable counts as unset):\n";
  u += "  OKTA_SIDECAR_CONFIG        --config\n";
  u += "  OKTA_SIDECAR_LISTEN        --listen\n";
  u += "  OKTA_SIDECAR_ADMIN_LISTEN  --admin-listen\n";
  u += "  OKTA_SIDECAR_STATE_DIR     --state-dir\n";
  u += "  OKTA_SIDECAR_LOG_LEVEL     --log-level\n";
  u += "  OKTA_SIDECAR_LOG_FORMAT    --log-format\n\n";
  u += "Precedence: command line, then environment, then config file, then defaults.\n";
  u += "OKTA_SIDECAR_REDIS_PASSWORD supplies the fleet Redis password when fleet.redis has none.\n";
  u += "Exit status: 0 clean shutdown, 1 runtime failure, 2 bad configuration or arguments.\n";
  return u;
}

env_lookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

parse_result build_config(const cli_options& options, const env_lookup& env) {
  // The value of one setting and where it came from, for error messages.
  struct sourced {
    std::string value;
    std::string source;
  };
  auto pick = [&](const std::optional<std::string>& cli, std::string_view flag_name,
                  std::string_view env_name) -> std::optional<sourced> {
    if (cli) return sourced{*cli, std::string(flag_name)};
    if (env) {
      if (auto v = env(env_name); v && !v->empty()) return sourced{*v, std::string(env_name)};
    }
    return std::nullopt;
  };

  parse_result result;
  if (auto file = pick(options.config_file, "--config", env_config)) {
    std::string why;
    if (auto text = read_file(file->value, why)) {
      result = parse_config(*text, file->value, config{});
    } else {
      result.errors.push_back(file->source + ": cannot read config file " + quote_json(file->value) + ": " +
                              why);
    }
  }

  config& c = result.cfg;
  auto apply_endpoint = [&](std::optional<sourced> v, endpoint& target) {
    if (!v) return;
    auto ep = explain_endpoint(v->value);
    if (!ep) {
      result.errors.push_back(v->source + ": " + quote_json(v->value) + " " + ep.error);
      return;
    }
    target = *ep.value;
  };
  apply_endpoint(pick(options.listen, "--listen", env_listen), c.listen);
  apply_endpoint(pick(options.admin_listen, "--admin-listen", env_admin_listen), c.admin_listen);
  if (auto v = pick(options.state_dir, "--state-dir", env_state_dir)) {
    if (v->value.empty()) {
      result.errors.push_back(v->source + ": must not be empty");
    } else {
      c.state_dir = v->value;
    }
  }
  if (auto v = pick(options.log_level, "--log-level", env_log_level)) {
    if (auto bad = check_choice(v->value, log_levels)) {
      result.errors.push_back(v->source + ": " + *bad);
    } else {
      c.log.level = v->value;
    }
  }
  if (auto v = pick(options.log_format, "--log-format", env_log_format)) {
    if (auto bad = check_choice(v->value, log_formats)) {
      result.errors.push_back(v->source + ": " + *bad);
    } else {
      c.log.format = v->value;
    }
  }

  finalize(c);
  for (std::string& e : validate(c)) result.errors.push_back(std::move(e));
  return result;
}

}  // namespace okta_sidecar::config
