#include <gtest/gtest.h>

#include <memory>

#include "okta_sidecar/proxy/services.hpp"

namespace okta_sidecar::proxy {
namespace {

std::shared_ptr<const runtime> make_runtime(std::uint32_t max_connections) {
  config::config c;
  c.client.max_connections = max_connections;
  return runtime::build(c);
}

TEST(CurrentRuntime, AConnectionTakesTheCurrentRuntimeOnlyWhenAnotherWasStored) {
  current_runtime current;
  const auto first = make_runtime(1);
  current.store(first);

  std::shared_ptr<const runtime> held;
  std::uint64_t seen = 0;
  current.refresh(held, seen);  // nothing held yet: takes the current one
  EXPECT_EQ(held, first);

  // No store since: the connection keeps what it holds (a copy it was given stays too).
  const auto other = make_runtime(2);
  held = other;
  current.refresh(held, seen);
  EXPECT_EQ(held, other);

  // A reload: the next refresh takes it, and then keeps it.
  const auto reloaded = make_runtime(3);
  current.store(reloaded);
  current.refresh(held, seen);
  EXPECT_EQ(held, reloaded);
  current.refresh(held, seen);
  EXPECT_EQ(held, reloaded);
  EXPECT_EQ(current.load(), reloaded);
}

TEST(CurrentRuntime, AConnectionMadeBeforeAReloadSeesIt) {
  current_runtime current;
  current.store(make_runtime(1));
  std::shared_ptr<const runtime> held = current.load();  // as a new connection takes it
  std::uint64_t seen = 0;                                // and has not refreshed yet
  const auto reloaded = make_runtime(2);
  current.store(reloaded);
  current.refresh(held, seen);
  EXPECT_EQ(held, reloaded);
}

}  // namespace
}  // namespace okta_sidecar::proxy
