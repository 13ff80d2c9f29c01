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
  const char* pattern = fmt == format::json ? R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})"
                                            : "%Y-%m-%dT%H:%M:%S.%fZ %l %v";
  sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(pattern, spdlog::pattern_time_type::utc));
  auto logger = std::make_shared<spdlog::logger>("okta-sidecar", std::move(sink));
  logger->set_level(parse_level(level));
  logger->flush_on(spdlog::level::trace);
  return logger;
}

void set_level(spdlog::logger& l, std::string_view level) { l.set_level(parse_level(level)); }

}  // namespace okta_sidecar::logging
