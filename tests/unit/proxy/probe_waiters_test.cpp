// Requests held for a half-open probe: woken by the probe's report, or by their deadline. No
// sockets; the timers only ever wait for an expiry already in the past or for a wake-up the
// test posts.
#include "okta_sidecar/proxy/probe_waiters.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
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
  auto guard = asio::make_work_guard(ioc);
  bool resumed = false;
  hold(ioc, w, steady_clock::now() + std::chrono::hours(1), resumed);
  std::thread loop([&ioc] { ioc.run(); });
  // The board reports on whichever thread recorded the probe: keep waking until the request,
  // parked on the other thread's loop, has registered and resumed.
  for (int i = 0; i < 5000 && !ioc.stopped(); ++i) {  // bounded: 5 s
    w.wake(host);
    asio::post(ioc, [&] {
      if (resumed) guard.reset();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ioc.stop();
  loop.join();
  EXPECT_TRUE(resumed);
}

}  // namespace
}  // namespace okta_sidecar::proxy
