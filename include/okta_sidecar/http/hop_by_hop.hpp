#pragma once
// Hop-by-hop fields (RFC 9110 §7.6.1): they describe one connection, so a proxy removes them
// before forwarding in either direction.
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::http {

// Lower-cased names to remove: the fixed set (Connection, Proxy-Connection, Keep-Alive, TE,
// Trailer, Transfer-Encoding, Upgrade, Proxy-Authorization, Proxy-Authenticate), always, plus
// every valid token listed in Connection. Host and Content-Length are never removed even when
// listed: the proxy routes and frames by them, and RFC 9110 §7.6.1 forbids listing fields meant
// for every recipient. No duplicates.
std::vector<std::string> hop_by_hop_names(std::span<const header_view> headers);

// Whether `name` is one of the fixed hop-by-hop fields above (any case). A message without a
// Connection field has no other hop-by-hop fields: this is the whole test then.
bool is_fixed_hop_by_hop(std::string_view name);

// The fields a message's Connection fields list beyond the fixed ones (valid tokens, never Host
// or Content-Length), gathered without allocating: a proxy strips every message it forwards.
class connection_options {
 public:
  void add(std::string_view connection_value);
  // Whether `name` is listed (any case).
  bool lists(std::string_view name) const;
  bool empty() const { return count_ == 0 && !overflow_; }
  // More names than fit here: use hop_by_hop_names() instead.
  bool overflow() const { return overflow_; }

 private:
  std::array<std::string_view, 8> names_{};
  std::size_t count_ = 0;
  bool overflow_ = false;
};

// The hop-by-hop fields of one message: the fixed ones and those its Connection fields list.
// Decided without allocating while Connection lists at most eight names. The listed names are
// views into `headers`' values: ask while those are alive.
class hop_by_hop_set {
 public:
  explicit hop_by_hop_set(std::span<const header_view> headers);
  bool contains(std::string_view name) const;

 private:
  connection_options listed_;
  std::vector<std::string> many_;  // hop_by_hop_names(), only when listed_ overflowed
};

// Whether the client asked to close after this exchange: a "close" option in Connection (or the
// legacy Proxy-Connection), or HTTP/1.0 without "keep-alive" (RFC 9112 §9.3).
bool wants_close(unsigned version, std::span<const header_view> headers);

}  // namespace okta_sidecar::http
