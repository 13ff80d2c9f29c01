#include "okta_sidecar/proxy/server.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <system_error>
#include <utility>

namespace okta_sidecar::proxy {

using tcp = asio::ip::tcp;

server::server(asio::io_context& ioc, services& svc, const tcp::endpoint& ep,
               std::vector<asio::io_context*> workers)
    : workers_(std::move(workers)),
      svc_(svc),
      acceptor_(asio::make_strand(ioc)),
      resume_(acceptor_.get_executor()) {
  boost::system::error_code ec;
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::system_error(ec,
                            "cannot listen on " + ep.address().to_string() + ":" + std::to_string(ep.port()));
  }
  local_ = acceptor_.local_endpoint();
  if (workers_.empty()) workers_.push_back(&ioc);
}

void server::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), [this](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      svc_.log.error(logging::event("accept loop failed").with("error", x.what()));
    }
  });
}

asio::awaitable<void> server::accept_loop() {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  while (accepting_.load()) {
    const std::size_t cap = std::max<std::uint32_t>(1, svc_.rt.load()->cfg.client.max_connections);
    if (active_.load() >= cap) {
      // Accepting pauses; every session that ends pokes `resume_`. The timer also expires on
      // its own, so a missed poke costs at most one period.
      svc_.metrics.accept_paused_now.inc();
      while (accepting_.load() && active_.load() >= cap) {
        resume_.expires_after(milliseconds(100));
        co_await resume_.async_wait(use_tuple);
      }
      continue;
    }
    asio::io_context& worker = *workers_[next_worker_++ % workers_.size()];
    auto [ec, sock] = co_await acceptor_.async_accept(worker, use_tuple);
    if (ec) {
      if (!accepting_.load() || ec == asio::error::operation_aborted) break;
      // Out of descriptors or a transient error: log it and breathe instead of spinning.
      svc_.log.warn(logging::event("accept failed").with("error", ec.message()));
      asio::steady_timer pause(acceptor_.get_executor(), milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    auto ex = sock.get_executor();
    auto ctl = std::make_shared<session_control>(ex);
    std::uint64_t id;
    {
      std::lock_guard lock(mu_);
      id = next_id_++;
      sessions_.emplace(id, ctl);
    }
    ++active_;
    svc_.metrics.open_now.add(1);
    ctl->ended = [this, id](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          svc_.log.error(logging::event("session failed").with("conn", id).with("error", x.what()));
        }
      }
      {
        std::lock_guard lock(mu_);
        sessions_.erase(id);
      }
      svc_.metrics.open_now.add(-1);
      --active_;
      asio::post(acceptor_.get_executor(), [this] { resume_.cancel(); });
    };
    start_session(svc_, std::move(sock), id, std::move(ctl));
  }
}

void server::stop_accepting() {
  accepting_.store(false);
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    resume_.cancel();
    listener_closed_.store(true);
  });
}

namespace {

// A session waiting for its next request ends when that wait does.
void cancel_wait(session_control& ctl) {
  if (ctl.waiting == nullptr) return;
  boost::system::error_code ignored;
  ctl.waiting->cancel(ignored);
}

}  // namespace

void server::close_idle_sessions() {
  std::lock_guard lock(mu_);
  for (auto& [id, ctl] : sessions_) {
    asio::post(ctl->executor, [ctl] { cancel_wait(*ctl); });
  }
}

void server::cancel_all_sessions() {
  std::lock_guard lock(mu_);
  for (auto& [id, ctl] : sessions_) {
    asio::post(ctl->executor, [ctl] {
      cancel_wait(*ctl);
      ctl->cancel.emit(asio::cancellation_type::terminal);
    });
  }
}

}  // namespace okta_sidecar::proxy
