#pragma once
// One request's scope (its access-log line and request metrics, written on every way out) and
// the sidecar's own answers.
// Includes context.hpp only (the layers are listed in session.cpp).
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string_view>

#include "context.hpp"
#include "okta_sidecar/http/local_reply.hpp"

namespace okta_sidecar::proxy::detail {

// Sends one of the sidecar's own answers (docs/architecture.md "responses the sidecar itself produces").
asio::awaitable<bool> send_local(conn_ctx& c, net::stream& s, http::local_error err, std::string_view detail,
                                 request_record& rec, bool keep_alive, unsigned version = 11,
                                 std::optional<std::int64_t> retry_after = {},
                                 const http::rate_limit_echo& echo = {}, std::string_view diagnosis = {});

// The request's series: looked up once, when its host and bucket are known.
metrics::bucket_series& series_of(conn_ctx& c, request_record& r);

// One request from its head to its end (Envoy's ActiveStream): however it ends, a local reply,
// an upstream response, the client gone or an exception, its completion writes the access-log
// line and counts okta_sidecar_requests_total, once. A connection that closes before a head
// arrives has no request, and no line.
class request_scope {
 public:
  explicit request_scope(conn_ctx& c) : c_(c) {}
  request_scope(const request_scope&) = delete;
  request_scope& operator=(const request_scope&) = delete;
  ~request_scope() {
    try {
      finish();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; a lost line is all
    }
  }

  // A head was read (or refused): from here on the request exists and will be logged.
  request_record& begin() {
    if (!begun_) {
      begun_ = true;
      rec_.started = c_.svc.clock.now();
      rec_.id = c_.svc.next_request_id++;
    }
    return rec_;
  }
  request_record& rec() { return rec_; }
  // Ends the request now rather than at the end of the scope (a CONNECT's line goes out before
  // the lines of the requests inside its tunnel); later calls do nothing.
  void finish();

 private:
  conn_ctx& c_;
  request_record rec_;
  bool begun_ = false;
  bool finished_ = false;
};

}  // namespace okta_sidecar::proxy::detail
