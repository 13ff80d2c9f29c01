#pragma once
// Structured logging: every line is one JSON object (or key=value text) built by `event`, and
// every sink sits behind the redaction layer (http::redact_text), so a token that slips into a
// message by mistake is still scrubbed before it reaches a file or a terminal.
#include <spdlog/logger.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace okta_sidecar::logging {

enum class format { json, text };

// Builds the console logger (stderr) used by the whole process. Level names as in the config.
std::shared_ptr<spdlog::logger> make_logger(std::string_view level, format fmt);
void set_level(spdlog::logger&, std::string_view level);

// One log event: a message plus fields. Field values are data, never header values that could
// carry a secret (callers pass ids, hashes, templates and counts).
class event {
 public:
  explicit event(std::string_view msg) : fields_{{"msg", msg}} {}
  template <class T>
  event& with(std::string_view key, T&& value) {
    fields_[std::string(key)] = std::forward<T>(value);
    return *this;
  }
  // The payload the formatter wraps: `"msg":"...","k":v` for json, `msg k=v` for text.
  std::string render(format fmt) const;

 private:
  nlohmann::json fields_;
};

// The shared handle: logger + format, passed by reference from main down.
class log {
 public:
  log(std::shared_ptr<spdlog::logger> l, format f) : logger_(std::move(l)), format_(f) {}
  bool enabled(spdlog::level::level_enum lvl) const { return logger_->should_log(lvl); }
  void write(spdlog::level::level_enum lvl, const event& e) const {
    if (logger_->should_log(lvl)) logger_->log(lvl, e.render(format_));
  }
  void trace(const event& e) const { write(spdlog::level::trace, e); }
  void debug(const event& e) const { write(spdlog::level::debug, e); }
  void info(const event& e) const { write(spdlog::level::info, e); }
  void warn(const event& e) const { write(spdlog::level::warn, e); }
  void error(const event& e) const { write(spdlog::level::err, e); }
  spdlog::logger& logger() const { return *logger_; }
  void flush() const { logger_->flush(); }

 private:
  std::shared_ptr<spdlog::logger> logger_;
  format format_;
};

}  // namespace okta_sidecar::logging
