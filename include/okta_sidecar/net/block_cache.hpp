#pragma once
// Per-thread recycling of fixed-size blocks for the objects each request allocates and frees.
// Asio recycles coroutine frames only up to about 1 KiB (and a few of them per thread); the
// larger per-request objects and the relay buffers come from here instead of a malloc and a
// free each time. A thread keeps at most Kept blocks of a size: that bounds what an idle
// worker holds; beyond it, blocks go back to the allocator.
#include <array>
#include <cstddef>
#include <new>

namespace okta_sidecar::net {

template <std::size_t Size, std::size_t Kept>
class block_cache {
 public:
  static void* get() {
    if (!gone && kept.count > 0) return kept.free[--kept.count];
    return ::operator new(Size);
  }
  static void put(void* p) {
    if (!gone && kept.count < Kept) {
      kept.free[kept.count++] = p;
    } else {
      ::operator delete(p);
    }
  }
  // How many blocks this thread keeps now (for tests).
  static std::size_t kept_now() { return gone ? 0 : kept.count; }

 private:
  struct list {
    std::array<void*, Kept> free{};
    std::size_t count = 0;
    ~list() {
      for (std::size_t i = 0; i < count; ++i) ::operator delete(free[i]);
      count = 0;
      gone = true;  // a block returned after the thread's list is gone is freed at once
    }
  };
  static inline thread_local list kept;
  static inline thread_local bool gone = false;
};

// An object allocated from its thread's block_cache: derive T from recycled<T>. A derived
// class of another size gets plain operator new.
template <class T, std::size_t Kept = 16>
struct recycled {
  static void* operator new(std::size_t n) {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "block_cache blocks have new's alignment");
    return n == sizeof(T) ? block_cache<sizeof(T), Kept>::get() : ::operator new(n);
  }
  static void operator delete(void* p, std::size_t n) {
    if (n == sizeof(T)) {
      block_cache<sizeof(T), Kept>::put(p);
    } else {
      ::operator delete(p);
    }
  }
};

}  // namespace okta_sidecar::net
