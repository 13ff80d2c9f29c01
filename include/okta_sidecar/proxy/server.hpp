#pragma once
// The proxy listener: accepts client connections, runs one session coroutine per connection
// on one of the workers' event loops (each run by one thread, so a session needs no strand),
// and supports draining (stop accepting, close idle sessions, count the rest).
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "okta_sidecar/proxy/services.hpp"

namespace okta_sidecar::proxy {

// Lets the server close a session that is waiting for its next request (drain), and only then.
struct session_control {
  explicit session_control(asio::any_io_executor ex) : executor(std::move(ex)) {}
  asio::any_io_executor executor;    // the session's worker
  asio::cancellation_signal cancel;  // emitted on that worker
  // The socket of a session waiting for its next request (only then, parked or not): the drain
  // cancels that wait. Read and written on the worker only.
  asio::ip::tcp::socket* waiting = nullptr;
  // Called once, on the worker, when the session has ended and its socket is closed; with the
  // exception that ended it, if one did.
  std::function<void(std::exception_ptr)> ended;
};

// Runs one client connection on its worker until it ends, then calls `ctl->ended`. Between
// requests the connection waits parked, as its socket's wait alone, without coroutine frames.
void start_session(services&, asio::ip::tcp::socket, std::uint64_t conn_id,
                   std::shared_ptr<session_control> ctl);

class server {
 public:
  // Binds now; throws std::system_error naming the address when it cannot. The listener runs
  // on `ioc`; sessions go round-robin to `workers` (`ioc` alone when empty), each of which
  // must be run by exactly one thread.
  server(asio::io_context& ioc, services&, const asio::ip::tcp::endpoint&,
         std::vector<asio::io_context*> workers = {});
  asio::ip::tcp::endpoint local_endpoint() const { return local_; }
  void start();
  void stop_accepting();
  // True once the listening socket is closed (stop_accepting() closes it on its strand).
  bool listener_closed() const { return listener_closed_.load(); }
  void close_idle_sessions();
  void cancel_all_sessions();
  std::size_t active_sessions() const { return active_.load(); }

 private:
  asio::awaitable<void> accept_loop();

  std::vector<asio::io_context*> workers_;
  std::size_t next_worker_ = 0;
  services& svc_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::endpoint local_;
  std::atomic<std::size_t> active_{0};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> listener_closed_{false};
  // At client.max_connections the loop stops calling accept (the kernel's backlog holds new
  // clients) and waits on this timer, which a closing session cancels (issue 14).
  asio::steady_timer resume_;
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::shared_ptr<session_control>> sessions_;
  std::uint64_t next_id_ = 1;
};

}  // namespace okta_sidecar::proxy
