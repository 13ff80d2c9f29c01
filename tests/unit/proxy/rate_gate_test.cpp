// rate_gate: the scheduler behind one lock, with each queued request parked until its verdict.
// No sockets and no sleeps: a fake clock, and an io_context run until its handlers are done.
#include "okta_sidecar/proxy/rate_gate.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>

#include "fake_clock.hpp"

namespace okta_sidecar::proxy {
namespace {

using std::chrono::seconds;

const ratelimit::bucket_key users{"acme.okta.com", "users"};

class RateGateTest : public ::testing::Test {
 protected:
  RateGateTest() {
    cfg_.max_concurrency = 8;
    cfg_.initial_concurrency = 4;
    cfg_.concurrency_reprobe = seconds(60);
  }
  ratelimit::admission_request req() const {
    return ratelimit::admission_request{users, 1, false, true, clock_.now() + seconds(60)};
  }
  ratelimit::observation window(std::int64_t limit, std::int64_t remaining) const {
    ratelimit::observation o;
    o.kind = ratelimit::limit_kind::window;
    o.limit = limit;
    o.remaining = remaining;
    o.reset_at = clock_.now() + seconds(60);
    o.reset_epoch = 1'700'000'060;
    return o;
  }
  static ratelimit::observation concurrency() {
    ratelimit::observation o;
    o.kind = ratelimit::limit_kind::concurrency;
    o.reset_epoch = 1'700'000'115;
    return o;
  }
  // Awaits `w` for `id` on the io_context, as a request's coroutine does.
  std::optional<rate_gate::result> wait_again(rate_gate& gate, ratelimit::ticket id,
                                              std::shared_ptr<rate_gate::waiter> w) {
    std::optional<rate_gate::result> out;
    asio::co_spawn(
        ioc_, [&]() -> asio::awaitable<void> { out = co_await gate.wait_again(id, std::move(w)); },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    ioc_.restart();
    ioc_.run();
    return out;
  }

  asio::io_context ioc_;
  testing::fake_clock clock_;
  ratelimit::scheduler_settings cfg_;
};

// A concurrency 429 whose request is requeued and re-admitted by the same poll (a slot is free
// at once): the verdict reaches the request that waits for it only afterwards.
TEST_F(RateGateTest, ARequeuedRequestReadmittedAtOnceIsNotLost) {
  rate_gate gate(ioc_, cfg_, clock_);
  auto probe = gate.submit(req(), ioc_.get_executor());
  ASSERT_EQ(probe.res.kind, rate_gate::outcome::admitted);
  gate.on_response(probe.res.id, 200, window(1000, 1000), false, ioc_.get_executor());
  auto b = gate.submit(req(), ioc_.get_executor());
  ASSERT_EQ(b.res.kind, rate_gate::outcome::admitted);

  // Alone in flight: the 429 lowers the cap, yet leaves a slot, so b goes back to the queue's
  // front and is admitted by the poll inside on_response, before anyone waits for it.
  auto responded = gate.on_response(b.res.id, 429, concurrency(), false, ioc_.get_executor());
  ASSERT_EQ(responded.decision.kind, ratelimit::response_kind::requeued);
  ASSERT_NE(responded.parked, nullptr);
  EXPECT_EQ(gate.queued(), 0u);

  const auto again = wait_again(gate, b.res.id, std::move(responded.parked));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->kind, rate_gate::outcome::admitted);
  EXPECT_EQ(again->id, b.res.id);
  gate.on_response(b.res.id, 200, window(1000, 998), false, ioc_.get_executor());
}

// A delivered response parks nothing.
TEST_F(RateGateTest, ADeliveredResponseParksNothing) {
  rate_gate gate(ioc_, cfg_, clock_);
  auto probe = gate.submit(req(), ioc_.get_executor());
  const auto responded = gate.on_response(probe.res.id, 200, window(1000, 999), false, ioc_.get_executor());
  EXPECT_EQ(responded.decision.kind, ratelimit::response_kind::deliver);
  EXPECT_EQ(responded.parked, nullptr);
}

}  // namespace
}  // namespace okta_sidecar::proxy
