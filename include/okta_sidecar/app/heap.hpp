#pragma once
// Freed heap memory handed back to the kernel after a burst.
//
// glibc keeps freed chunks inside its arenas and returns pages to the kernel only from the top
// of an arena. After a burst (thousands of TLS handshakes at once, whose transient state is
// freed as each one ends, between the connections' long-lived state) the pages under those
// free chunks stay resident: about 300 B for each of 10,000 idle intercepted connections.
// malloc_trim(0) gives them back (madvise(MADV_DONTNEED) on the whole free pages of every
// arena). It walks each arena under that arena's lock, so it runs only when enough has been
// freed since it last ran.
#include <cstddef>

namespace okta_sidecar::app {

// When to trim, from the allocator's free bytes sampled at a steady interval: once they have
// grown by min_gain over their lowest sample since the last trim. Trimming does not lower the
// free bytes (the chunks stay free; only their pages go), so the baseline restarts at the
// sample that triggered it; new allocations reuse free chunks and lower it again.
class heap_trim_policy {
 public:
  explicit heap_trim_policy(std::size_t min_gain) : min_gain_(min_gain) {}

  // One sample of the free bytes; true: trim now.
  bool should_trim(std::size_t free_bytes) {
    if (!seen_ || free_bytes < low_) {
      seen_ = true;
      low_ = free_bytes;
      return false;
    }
    if (free_bytes - low_ < min_gain_) return false;
    low_ = free_bytes;
    return true;
  }

 private:
  std::size_t min_gain_;
  std::size_t low_ = 0;
  bool seen_ = false;
};

// What one upkeep call saw and did.
struct heap_upkeep_result {
  bool supported = false;  // false: not glibc's allocator (a sanitizer's, say); nothing was done
  std::size_t free_bytes = 0;
  bool trimmed = false;
};

// Samples glibc's free bytes (mallinfo2) and trims when the policy says so.
heap_upkeep_result heap_upkeep(heap_trim_policy& policy);

}  // namespace okta_sidecar::app
