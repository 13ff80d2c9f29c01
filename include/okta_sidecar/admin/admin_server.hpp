#pragma once
// The operator-facing HTTP endpoint (docs/architecture.md "Contract: admin endpoints"): health and
// readiness probes, Prometheus metrics, the /status JSON, the live dashboard and the CA
// certificate. Plain HTTP/1.1 on a separate listener so probes and scrapes never queue behind
// proxied traffic.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "okta_sidecar/policy/admin_access.hpp"

namespace okta_sidecar::admin {

// What the endpoints show; each is called on an admin connection's strand, per request, so it
// must be thread-safe and cheap. An unset function makes its route answer 404.
struct handlers {
  std::function<bool()> ready;                 // /readyz: 200 "ready" or 503 "draining"/"starting"
  std::function<std::string()> metrics;        // /metrics body (text/plain; version=0.0.4)
  std::function<std::string()> status_json;    // /status body (application/json)
  std::function<std::string()> ca_pem;         // /ca.crt (application/x-pem-file); "" = 404
  std::function<std::string()> ca_bundle_pem;  // /ca-bundle.pem: system roots + the CA; "" = 404
  std::function<std::string()> config_json;    // /config: effective configuration, secrets redacted
  std::function<std::string()> history_json;   // /status/history: the dashboard's last 15 minutes
  // Optional: while it returns true /readyz answers 503 "draining" (else "starting" when not
  // ready), so probes and humans can tell shutdown from start-up.
  std::function<bool()> draining;
};

// Bounds and deadlines of the admin listener: every buffer bounded, a deadline before every
// operation.
struct admin_options {
  std::chrono::milliseconds read_timeout{10000};  // whole request, and keep-alive idle
  std::chrono::milliseconds write_timeout{10000};
  std::size_t max_header_bytes = 8 * 1024;  // beyond: 431
  std::size_t max_body_bytes = 1024;        // beyond: 413 (no route takes a body)
  std::size_t max_connections = 64;         // beyond: the new connection is closed
  policy::admin_access_settings access;     // Host check and loopback-only pages (issue 14)
};

// Accepts admin connections and serves the routes above with keep-alive.
class admin_server {
 public:
  // Binds and listens now (port 0 picks a free port); throws std::system_error naming the
  // address when it cannot.
  admin_server(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& ep, handlers h);
  admin_server(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& ep, handlers h,
               admin_options opts);
  ~admin_server();  // stop()s; coroutines still queued keep the shared state alive
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  void start();  // spawns the accept loop
  void stop();   // closes the acceptor and every open admin connection; idempotent, thread-safe
  // stop() closes the listener on its strand, asynchronously; this waits (up to `timeout`)
  // until it has, and says whether it has. Call it from outside the io_context's threads.
  bool wait_listener_closed(std::chrono::milliseconds timeout);

  struct state;

 private:
  std::shared_ptr<state> state_;
  boost::asio::ip::tcp::endpoint local_;
};

}  // namespace okta_sidecar::admin
