#include "okta_sidecar/logging/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

#include "okta_sidecar/http/redact.hpp"

namespace okta_sidecar::logging {
namespace {

// Formats with the inner pattern, scrubs secrets from the finished line, then writes it.
class redacting_stderr_sink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::string line = http::redact_text(std::string_view(formatted.data(), formatted.size()));
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

// spdlog's %l spells warn as "warning" and error as "error", critical as "critical"; the log
// says the level as the --log-level flag and log.level spell it, so a filter written from the
// flag ("level":"warn") matches.
class flag_level_formatter final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view name = level_name(msg.level);
    dest.append(name.data(), name.data() + name.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<flag_level_formatter>();
  }

 private:
  static std::string_view level_name(spdlog::level::level_enum l) {
    switch (l) {
      case spdlog::level::trace:
        return "trace";
      case spdlog::level::debug:
        return "debug";
      case spdlog::level::info:
        return "info";
      case spdlog::level::warn:
        return "warn";
      case spdlog::level::err:
        return "error";
      case spdlog::level::critical:
        return "critical";
      case spdlog::level::off:
      case spdlog::level::n_levels:
        break;
    }
    return "off";
  }
};

spdlog::level::level_enum parse_level(std::string_view level) {
  if (level == "trace") return spdlog::level::trace;
  if (level == "debug") return spdlog::level::debug;
  if (level == "warn") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return spdlog::level::info;
}

}  // namespace

std::string event::render(format fmt) const {
  if (fmt == format::json) {
    std::string s = fields_.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return s.substr(1, s.size() - 2);  // the formatter adds the braces around ts/level
  }
  std::string out = fields_.value("msg", "");
  for (const auto& [k, v] : fields_.items()) {
    if (k == "msg") continue;
    out += ' ';
    out += k;
    out += '=';
    out += v.is_string() ? v.get<std::string>()
                         : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return out;
}

std::shared_ptr<spdlog::logger> make_logger(std::string_view level, format fmt) {
  auto sink = std::make_shared<redacting_stderr_sink>();
  const char* pattern = fmt == format::json ? R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%*",%v})"
                                            : "%Y-%m-%dT%H:%M:%S.%fZ %* %v";
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<flag_level_formatter>('*').set_pattern(pattern);
  sink->set_formatter(std::move(formatter));
  auto logger = std::make_shared<spdlog::logger>("okta-sidecar", std::move(sink));
  logger->set_level(parse_level(level));
  logger->flush_on(spdlog::level::trace);
  return logger;
}

void set_level(spdlog::logger& l, std::string_view level) { l.set_level(parse_level(level)); }

}  // namespace okta_sidecar::logging
