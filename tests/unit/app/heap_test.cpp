#include "okta_sidecar/app/heap.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace okta_sidecar::app {
namespace {

constexpr std::size_t MiB = 1024 * 1024;

TEST(HeapTrimPolicy, FirstSampleIsTheBaseline) {
  heap_trim_policy p(4 * MiB);
  EXPECT_FALSE(p.should_trim(100 * MiB));  // whatever was free at start is no gain
  EXPECT_FALSE(p.should_trim(103 * MiB));
  EXPECT_TRUE(p.should_trim(104 * MiB));
}

TEST(HeapTrimPolicy, GainIsCountedFromTheLowestSampleSinceTheLastTrim) {
  heap_trim_policy p(4 * MiB);
  EXPECT_FALSE(p.should_trim(10 * MiB));
  EXPECT_FALSE(p.should_trim(2 * MiB));  // allocations reused free chunks: a new low
  EXPECT_FALSE(p.should_trim(5 * MiB));  // 3 MiB over the low
  EXPECT_TRUE(p.should_trim(6 * MiB));   // 4 MiB over it
  EXPECT_FALSE(p.should_trim(6 * MiB));  // trimmed pages stay free chunks: no new gain
  EXPECT_FALSE(p.should_trim(9 * MiB));
  EXPECT_TRUE(p.should_trim(10 * MiB));
}

TEST(HeapTrimPolicy, SteadyChurnBelowTheGainNeverTrims) {
  heap_trim_policy p(4 * MiB);
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(p.should_trim((i % 2 ? 7 : 4) * MiB)) << i;
}

long resident_bytes() {
  std::ifstream in("/proc/self/statm");
  long size = 0, resident = 0;
  in >> size >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

// The effect the upkeep exists for: free chunks between live ones, whole pages inside them,
// are given back.
TEST(HeapUpkeep, GivesBackThePagesOfFreeChunksBetweenLiveOnes) {
  heap_trim_policy probe(0);
  if (!heap_upkeep(probe).supported) GTEST_SKIP() << "not glibc's allocator";
  constexpr int n = 2000;
  constexpr std::size_t big = 16 * 1024;  // under the mmap threshold: from the arena
  std::vector<void*> bigs, smalls;
  for (int i = 0; i < n; ++i) {
    bigs.push_back(std::malloc(big));
    std::memset(bigs.back(), 1, big);   // resident
    smalls.push_back(std::malloc(64));  // keeps the big chunks apart after they are freed
  }
  for (void* b : bigs) std::free(b);
  const long before = resident_bytes();

  heap_trim_policy p(8 * MiB);
  const auto first = heap_upkeep(p);
  EXPECT_FALSE(first.trimmed);  // the first sample is the baseline
  EXPECT_GE(first.free_bytes, n * big);

  heap_trim_policy eager(0);
  ASSERT_FALSE(heap_upkeep(eager).trimmed);
  ASSERT_TRUE(heap_upkeep(eager).trimmed);  // no gain needed
  const long after = resident_bytes();
  // Each free 16 KiB chunk holds at least three whole pages.
  EXPECT_GE(before - after, static_cast<long>(n) * 3 * ::sysconf(_SC_PAGESIZE)) << before << " -> " << after;
  for (void* s : smalls) std::free(s);
}

}  // namespace
}  // namespace okta_sidecar::app
