#pragma once
// A coroutine parked on its own event loop until another thread wakes it or its deadline passes:
// a queued request (proxy::rate_gate), a follower of a coalesced read (proxy::shared_reads), a
// request held for a half-open probe (proxy::probe_waiters), a request waiting for a pooled
// connection (upstream::connection_pool).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::net {

namespace asio = boost::asio;

// Made by the owner with the executor its coroutine runs on, and shared with whoever may wake
// it. wait() runs on that executor and wake() only posts a handler there, so the spot's state is
// touched on that loop alone and needs no lock. One spot serves one wait: a coroutine that
// parks again takes a new spot, and a wake meant for the old one goes nowhere.
template <class T = std::monostate>
class parking_spot : public std::enable_shared_from_this<parking_spot<T>> {
  struct token {
    explicit token() = default;
  };

 public:
  static std::shared_ptr<parking_spot> make(asio::any_io_executor ex) {
    return std::make_shared<parking_spot>(token{}, std::move(ex));
  }
  parking_spot(token, asio::any_io_executor ex) : timer_(std::move(ex), time_point::max()) {}

  // Any thread: hands `value` to the owner on its loop and ends its wait, or, when the owner
  // has not started waiting yet, the wait returns it at once. Only the first wake counts.
  void wake(T value = {}) {
    asio::post(timer_.get_executor(), [self = this->shared_from_this(), value = std::move(value)]() mutable {
      if (self->value_) return;
      self->value_.emplace(std::move(value));
      self->timer_.cancel();  // ends a wait in progress; a wait still to come sees the value first
    });
  }

  // On the owner's loop: the woken value, or nullopt once `deadline` passes or the awaiting
  // operation is cancelled (for a client session: the client went away).
  asio::awaitable<std::optional<T>> wait(time_point deadline = time_point::max()) {
    auto self = this->shared_from_this();
    if (!value_) timer_.expires_at(deadline);
    while (!value_) {
      auto [ec] = co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      if (value_) break;
      if (!ec) co_return std::nullopt;  // the deadline
      auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none) co_return std::nullopt;
    }
    co_return value_;
  }

 private:
  asio::steady_timer timer_;
  std::optional<T> value_;  // set by the first wake, on the owner's loop
};

}  // namespace okta_sidecar::net
