// The per-thread block cache behind per-request objects and relay buffers: blocks come back in
// the order they were returned, a thread keeps at most its bound, and threads share nothing.
#include "okta_sidecar/net/block_cache.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace okta_sidecar::net {
namespace {

using cache = block_cache<256, 4>;

TEST(BlockCacheTest, ReturnedBlocksAreReusedLastInFirstOut) {
  void* a = cache::get();
  void* b = cache::get();
  const auto before = cache::kept_now();
  cache::put(a);
  cache::put(b);
  EXPECT_EQ(cache::kept_now(), before + 2);
  EXPECT_EQ(cache::get(), b);
  EXPECT_EQ(cache::get(), a);
  EXPECT_EQ(cache::kept_now(), before);
  cache::put(a);
  cache::put(b);
}

TEST(BlockCacheTest, KeepsAtMostItsBoundAndFreesTheRest) {
  using small = block_cache<64, 3>;
  std::vector<void*> blocks;
  for (int i = 0; i < 10; ++i) blocks.push_back(small::get());
  EXPECT_EQ(std::set<void*>(blocks.begin(), blocks.end()).size(), blocks.size());  // all distinct
  for (void* p : blocks) small::put(p);  // 7 of them are freed (ASan sees a leak or a double free)
  EXPECT_EQ(small::kept_now(), 3u);
}

TEST(BlockCacheTest, EachThreadKeepsItsOwnBlocks) {
  using shared_size = block_cache<128, 8>;
  void* mine = shared_size::get();
  shared_size::put(mine);
  const auto kept_here = shared_size::kept_now();
  void* theirs = nullptr;
  std::size_t kept_there = 99;
  std::thread t([&] {
    theirs = shared_size::get();  // a new block: this thread's list starts empty
    shared_size::put(theirs);
    kept_there = shared_size::kept_now();
  });  // the thread's list, and the block in it, are freed at its exit
  t.join();
  EXPECT_NE(theirs, mine);
  EXPECT_EQ(kept_there, 1u);
  EXPECT_EQ(shared_size::kept_now(), kept_here);
}

struct per_request : recycled<per_request, 2> {
  char payload[1500] = {};
};
struct larger : per_request {
  char more[100] = {};
};

TEST(BlockCacheTest, RecycledObjectsReuseTheirStorageAndDerivedOnesDoNot) {
  void* first = nullptr;
  {
    auto r = std::make_unique<per_request>();
    first = r.get();
  }
  auto again = std::make_unique<per_request>();
  EXPECT_EQ(again.get(), first);
  auto d = std::make_unique<larger>();  // another size: plain operator new, and delete
  EXPECT_NE(static_cast<void*>(d.get()), first);
  d.reset();
  EXPECT_EQ((block_cache<sizeof(per_request), 2>::kept_now()), 0u);
}

TEST(SparesTest, ABufferComesBackWithItsCapacityAndEmpty) {
  using strings = spares<std::string, 2>;
  std::string s(1000, 'x');
  const char* storage = s.data();
  strings::give(std::move(s));
  EXPECT_EQ(strings::kept_now(), 1u);
  std::string again = strings::take();
  EXPECT_EQ(again.data(), storage);  // the same heap buffer, not a new one
  EXPECT_TRUE(again.empty());
  EXPECT_GE(again.capacity(), 1000u);
  EXPECT_EQ(strings::kept_now(), 0u);
  EXPECT_TRUE(strings::take().empty());  // none kept: a fresh one
}

TEST(SparesTest, KeepsNeitherSmallNorOutsizeBuffersAndAtMostItsBound) {
  using vectors = spares<std::vector<int>, 2>;
  vectors::give(std::vector<int>{});  // no heap buffer: nothing to keep
  vectors::give(std::vector<int>(vectors::max_bytes / sizeof(int) + 1));
  EXPECT_EQ(vectors::kept_now(), 0u);
  for (int i = 0; i < 4; ++i) vectors::give(std::vector<int>(100));  // two are freed (ASan checks)
  EXPECT_EQ(vectors::kept_now(), 2u);
  EXPECT_EQ(vectors::take().capacity(), 100u);
  EXPECT_EQ(vectors::take().capacity(), 100u);
  EXPECT_EQ(vectors::take().capacity(), 0u);
}

TEST(SparesTest, ASpareInScopeGoesBackAtItsEnd) {
  using strings = spares<std::string>;  // the spares spare<std::string> takes from
  const auto before = strings::kept_now();
  {
    spare<std::string> held;
    held->assign(500, 'y');
  }
  EXPECT_EQ(strings::kept_now(), before + 1);
  spare<std::string> next;
  EXPECT_TRUE(next->empty());
  EXPECT_GE(next->capacity(), 500u);
}

}  // namespace
}  // namespace okta_sidecar::net
