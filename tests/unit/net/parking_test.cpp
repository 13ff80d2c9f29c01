// A coroutine parked on a spot of its own loop: woken before or while it waits, from this
// thread or another, or resumed empty-handed by its deadline or a cancellation. No sockets;
// the timers only wait for a deadline already due, a short one, or a wake the test sends.
#include "okta_sidecar/net/parking.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace okta_sidecar::net {
namespace {

using spot = parking_spot<int>;
const auto far = [] { return steady_clock::now() + std::chrono::hours(1); };

// What one wait came back with; `finished` stays false while it is parked.
struct parked {
  bool finished = false;
  std::optional<int> value;
};

// Parks on `s` (of `ioc`) until `deadline`; the outcome lands in `out`.
template <class Token>
void park(asio::io_context& ioc, std::shared_ptr<spot> s, time_point deadline, parked& out, Token token) {
  asio::co_spawn(
      ioc,
      [s, deadline, &out]() -> asio::awaitable<void> {
        out.value = co_await s->wait(deadline);
        out.finished = true;
      },
      std::move(token));
}

void park(asio::io_context& ioc, std::shared_ptr<spot> s, time_point deadline, parked& out) {
  park(ioc, std::move(s), deadline, out, [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
}

TEST(ParkingSpot, AWakeWhileParkedResumesTheOwnerWithTheValue) {
  asio::io_context ioc;
  auto s = spot::make(ioc.get_executor());
  parked out;
  park(ioc, s, far(), out);
  ioc.poll();
  EXPECT_FALSE(out.finished);
  s->wake(7);
  ioc.run();
  ASSERT_TRUE(out.finished);
  EXPECT_EQ(out.value, 7);
}

TEST(ParkingSpot, AWakeBeforeTheWaitIsKeptForIt) {
  // The handler has run before the owner waits (the rate gate's verdict reaching a request
  // before its coroutine parks)...
  {
    asio::io_context ioc;
    auto s = spot::make(ioc.get_executor());
    s->wake(3);
    ioc.poll();
    parked out;
    park(ioc, s, far(), out);
    ioc.restart();  // poll() ran out of work
    ioc.run();
    ASSERT_TRUE(out.finished);
    EXPECT_EQ(out.value, 3);
  }
  // ...or is still queued behind the owner's start.
  {
    asio::io_context ioc;
    auto s = spot::make(ioc.get_executor());
    parked out;
    park(ioc, s, far(), out);
    s->wake(4);
    ioc.run();
    ASSERT_TRUE(out.finished);
    EXPECT_EQ(out.value, 4);
  }
}

TEST(ParkingSpot, OnlyTheFirstWakeCounts) {
  asio::io_context ioc;
  auto s = spot::make(ioc.get_executor());
  parked out;
  park(ioc, s, far(), out);
  s->wake(1);
  s->wake(2);
  ioc.run();
  ASSERT_TRUE(out.finished);
  EXPECT_EQ(out.value, 1);
}

TEST(ParkingSpot, TheDeadlineResumesTheOwnerEmptyHanded) {
  asio::io_context ioc;
  auto due = spot::make(ioc.get_executor());
  auto soon = spot::make(ioc.get_executor());
  parked already, later;
  park(ioc, due, steady_clock::now(), already);
  park(ioc, soon, steady_clock::now() + milliseconds(20), later);
  ioc.run();
  ASSERT_TRUE(already.finished);
  EXPECT_EQ(already.value, std::nullopt);
  ASSERT_TRUE(later.finished);
  EXPECT_EQ(later.value, std::nullopt);
  // A wake after the deadline finds nobody waiting and does no harm.
  soon->wake(9);
  ioc.restart();
  ioc.run();
  EXPECT_EQ(later.value, std::nullopt);
}

TEST(ParkingSpot, CancellingTheAwaitingOperationResumesTheOwnerEmptyHanded) {
  asio::io_context ioc;
  auto s = spot::make(ioc.get_executor());
  asio::cancellation_signal client_gone;
  parked out;
  bool threw = false;
  park(ioc, s, far(), out, asio::bind_cancellation_slot(client_gone.slot(), [&threw](std::exception_ptr e) {
         threw = e != nullptr;
       }));
  ioc.poll();
  EXPECT_FALSE(out.finished);
  client_gone.emit(asio::cancellation_type::terminal);
  ioc.run();
  EXPECT_FALSE(threw);
  ASSERT_TRUE(out.finished);
  EXPECT_EQ(out.value, std::nullopt);
  // The waker may still hold the spot: its late wake runs on the loop harmlessly.
  s->wake(5);
  ioc.restart();
  ioc.run();
  EXPECT_EQ(out.value, std::nullopt);
}

TEST(ParkingSpot, TheValuelessSpotReportsWhetherItWasWoken) {
  asio::io_context ioc;
  auto woken = parking_spot<>::make(ioc.get_executor());
  auto due = parking_spot<>::make(ioc.get_executor());
  bool was_woken = false, was_due = true;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto r = co_await woken->wait();
        was_woken = r.has_value();
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto r = co_await due->wait(steady_clock::now());
        was_due = r.has_value();
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  woken->wake();
  ioc.run();
  EXPECT_TRUE(was_woken);
  EXPECT_FALSE(was_due);
}

// Spots parked on a loop run by its own thread, woken (twice each) by two other threads at
// once: every owner resumes on its loop with exactly one of the values sent.
TEST(ParkingSpot, WakesFromOtherThreadsResumeTheOwnersOnTheirLoop) {
  constexpr int n = 200;
  asio::io_context ioc;
  std::vector<std::shared_ptr<spot>> spots;
  std::vector<parked> outs(n);
  for (int i = 0; i < n; ++i) {
    spots.push_back(spot::make(ioc.get_executor()));
    // Bounded, so a lost wake fails the test instead of hanging it.
    park(ioc, spots.back(), steady_clock::now() + std::chrono::seconds(10), outs[i]);
  }
  std::thread loop([&ioc] { ioc.run(); });  // returns when every owner has resumed
  auto waker = [&spots](int offset) {
    for (int i = 0; i < n; ++i) spots[i]->wake(i * 2 + offset);
  };
  std::thread a(waker, 0), b(waker, 1);
  a.join();
  b.join();
  loop.join();
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(outs[i].finished) << i;
    ASSERT_TRUE(outs[i].value.has_value()) << i;
    EXPECT_TRUE(*outs[i].value == i * 2 || *outs[i].value == i * 2 + 1) << i;
  }
}

}  // namespace
}  // namespace okta_sidecar::net
