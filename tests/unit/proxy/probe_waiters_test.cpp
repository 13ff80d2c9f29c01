// Requests held for a half-open probe: woken by the probe's report, or by their deadline. No
// sockets and no sleeps; the timers only ever wait for an expiry already in the past or for a
// wake-up the test sends.
#include "okta_sidecar/proxy/probe_waiters.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <future>
#include <string>
#include <thread>

namespace okta_sidecar::proxy {
namespace {

const std::string host = "acme.okta.com";

// Parks one request for `host` on `ioc` until `deadline`, as a held request does (registered,
// then waiting, then released); `resumed` turns true when it wakes.
void hold(asio::io_context& ioc, probe_waiters& w, time_point deadline, bool& resumed) {
  asio::co_spawn(
      ioc,
      [&w, &ioc, deadline, &resumed]() -> asio::awaitable<void> {
        const auto spot = w.hold(host, ioc.get_executor());
        co_await spot->wait(deadline);
        w.release(host, spot);
        resumed = true;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
}

// The board reports between a request's registration and its wait (another thread's probe):
// the wake is kept, and the wait returns at once.
TEST(ProbeWaiters, AReportBetweenRegisteringAndWaitingIsNotLost) {
  probe_waiters w;
  asio::io_context ioc;
  bool resumed = false;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        const auto spot = w.hold(host, ioc.get_executor());
        w.wake(host);  // the report lands before the wait starts
        co_await spot->wait(steady_clock::now() + std::chrono::hours(1));
        w.release(host, spot);
        resumed = true;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run_for(std::chrono::seconds(5));  // bounded: a lost wake would wait the hour
  EXPECT_TRUE(resumed);
}

TEST(ProbeWaiters, AReportWakesTheRequestsHeldForThatHostOnly) {
  probe_waiters w;
  asio::io_context ioc;
  bool resumed = false;
  hold(ioc, w, steady_clock::now() + std::chrono::hours(1), resumed);
  ioc.poll();  // parked on its timer
  EXPECT_FALSE(resumed);
  w.wake("other.okta.com");
  ioc.poll();
  EXPECT_FALSE(resumed);
  w.wake(host);
  ioc.run();
  EXPECT_TRUE(resumed);
}

TEST(ProbeWaiters, AHeldRequestResumesAtItsDeadlineWithoutAReport) {
  probe_waiters w;
  asio::io_context ioc;
  bool resumed = false;
  hold(ioc, w, steady_clock::now(), resumed);  // already due
  ioc.run();
  EXPECT_TRUE(resumed);
}

TEST(ProbeWaiters, AWakeFromAnotherThreadResumesTheRequestOnItsOwnLoop) {
  probe_waiters w;
  asio::io_context ioc;
  std::promise<void> registered;
  auto registered_future = registered.get_future();
  bool woken = false;
  std::thread::id resumed_on;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        const auto spot = w.hold(host, ioc.get_executor());
        registered.set_value();
        // Bounded: a lost wake ends at this deadline, with no value, and the test fails.
        woken = (co_await spot->wait(steady_clock::now() + std::chrono::seconds(10))).has_value();
        w.release(host, spot);
        resumed_on = std::this_thread::get_id();
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  std::thread loop([&ioc] { ioc.run(); });
  // The board reports on whichever thread recorded the probe: this one, once the request,
  // parked on the other thread's loop, has registered.
  registered_future.wait();
  w.wake(host);
  const auto loop_id = loop.get_id();
  loop.join();  // the loop runs out of work once the request has resumed
  EXPECT_TRUE(woken);
  EXPECT_EQ(resumed_on, loop_id);
}

}  // namespace
}  // namespace okta_sidecar::proxy
