#include "okta_sidecar/app/heap.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace okta_sidecar::app {

namespace {
// Sanitizers replace the allocator: glibc's statistics and trim then see a heap nobody uses.
constexpr bool sanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    true;
#else
    false;
#endif
}  // namespace

heap_upkeep_result heap_upkeep(heap_trim_policy& policy) {
  heap_upkeep_result r;
#if defined(__GLIBC__)
  if (sanitized) return r;
  r.supported = true;
  // fordblks: the bytes in free chunks of every arena (the top chunks included).
  r.free_bytes = ::mallinfo2().fordblks;
  if (policy.should_trim(r.free_bytes)) {
    ::malloc_trim(0);
    r.trimmed = true;
  }
#else
  (void)policy;
#endif
  return r;
}

}  // namespace okta_sidecar::app
