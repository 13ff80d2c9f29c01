#pragma once
// The thin async shell around ratelimit::scheduler: it performs the scheduler's decisions
// (wake a queued request, reject one whose deadline can no longer be met) and re-arms one timer
// at the scheduler's next wake-up. All scheduler calls happen under one mutex; waiting
// coroutines are woken on their own strands.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/net/parking.hpp"
#include "okta_sidecar/ratelimit/classifier.hpp"
#include "okta_sidecar/ratelimit/scheduler.hpp"

namespace okta_sidecar::proxy {

namespace asio = boost::asio;

class rate_gate {
 public:
  enum class outcome { admitted, rejected, cancelled, queued };
  struct result {
    outcome kind = outcome::admitted;
    ratelimit::ticket id = 0;
    duration retry_after{};
  };

  // `store`: where budgets live; null = in this process. Fleet mode passes the Redis-backed
  // store from fleet::fleet_service::make_store().
  rate_gate(asio::io_context& ioc, ratelimit::scheduler_settings s, const clock_source& clock,
            std::unique_ptr<ratelimit::bucket_store> store = nullptr);

  // A queued request's parking spot, woken with its verdict.
  using waiter = net::parking_spot<result>;
  // The scheduler's verdict now: admitted, rejected, or queued with `parked` set, to be
  // awaited with wait(). Most requests are admitted at once and never suspend.
  struct submitted {
    result res;
    std::shared_ptr<waiter> parked;
  };
  submitted submit(const ratelimit::admission_request&, asio::any_io_executor ex);
  // The bucket name a classified request uses (ids beyond the per-host cap share
  // "<group>:other"); see scheduler::bucket_name.
  std::string bucket_name(const std::string& host, const ratelimit::classification&);
  // Waits for a queued request's verdict. Cancelling the awaiting operation (the client went
  // away) removes the request from the queue.
  asio::awaitable<result> wait(const submitted&);
  // A response's lesson for the scheduler and what becomes of its ticket; `requeued` comes with
  // `parked` set, to be awaited with wait_again(). It is registered before the poll that may
  // already decide it (a concurrency 429 is often re-admitted at once), and keeps that verdict.
  struct responded {
    ratelimit::response_decision decision;
    std::shared_ptr<waiter> parked;
  };
  responded on_response(ratelimit::ticket, int status, const ratelimit::observation&, bool per_principal,
                        asio::any_io_executor ex);
  // After on_response said `requeued`: waits for the ticket's turn again.
  asio::awaitable<result> wait_again(ratelimit::ticket, std::shared_ptr<waiter>);
  void on_failure(ratelimit::ticket);
  void cancel(ratelimit::ticket);

  ratelimit::last_seen last(const ratelimit::bucket_key&) const;
  std::vector<ratelimit::bucket_status> buckets() const;
  std::vector<ratelimit::host_status> hosts() const;
  std::size_t queued() const;
  std::size_t bucket_count() const;
  void update_settings(const ratelimit::scheduler_settings&);
  // Shutdown: every queued request is answered `rejected` (the caller replies shutting_down).
  void drain();

 private:
  void pump_locked(time_point now);
  void finish_locked(ratelimit::ticket, outcome, duration retry_after);

  const clock_source& clock_;
  mutable std::mutex mu_;
  ratelimit::scheduler scheduler_;
  std::unordered_map<ratelimit::ticket, std::shared_ptr<waiter>> waiters_;
  asio::strand<asio::io_context::executor_type> timer_strand_;
  asio::steady_timer wake_timer_;
  time_point armed_for_ = time_point::max();
};

}  // namespace okta_sidecar::proxy
