#pragma once
// `fleet.redis`: redis://[user:password@]host[:port][/db] or rediss:// for TLS (the URI scheme
// IANA registered for Redis, as redis-cli and the client libraries accept it).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::fleet {

// A parsed Redis address with its credentials.
struct redis_url {
  bool tls = false;
  std::string host;
  std::uint16_t port = 6379;
  int db = 0;
  std::string user;      // ACL user (Redis 6+); empty = "default"
  std::string password;  // empty = no AUTH

  // nullopt and a message naming what is wrong.
  static std::optional<redis_url> parse(std::string_view text, std::string* error = nullptr);
  // For logs and /status: the password never appears.
  std::string redacted() const;
};

}  // namespace okta_sidecar::fleet
