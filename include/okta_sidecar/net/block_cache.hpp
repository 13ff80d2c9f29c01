#pragma once
// Per-thread recycling of fixed-size blocks for the objects each request allocates and frees.
// Asio recycles coroutine frames only up to about 1 KiB (and a few of them per thread); the
// larger per-request objects and the relay buffers come from here instead of a malloc and a
// free each time. A thread keeps at most Kept blocks of a size: that bounds what an idle
// worker holds; beyond it, blocks go back to the allocator. Growable buffers (the heads a
// request writes) are kept the same way, with their capacity (spares, spare).
#include <array>
#include <cstddef>
#include <new>
#include <utility>

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

// A thread's spare growable buffers (std::string, std::vector): the heads a request writes and
// the response reader's copy of a head come back with their capacity, so a busy thread stops
// allocating them. A thread keeps at most Kept; one without a heap buffer, or with more than
// max_bytes of it (more than a head and a relayed first piece of 16 KiB), goes back to the
// allocator instead.
template <class Buffer, std::size_t Kept = 8>
class spares {
 public:
  static constexpr std::size_t max_bytes = 24 * 1024;
  static Buffer take() {
    if (gone || kept.count == 0) return Buffer{};
    return std::move(kept.items[--kept.count]);
  }
  static void give(Buffer&& b) {
    const std::size_t bytes = b.capacity() * sizeof(typename Buffer::value_type);
    if (gone || kept.count == Kept || bytes <= sizeof(Buffer) || bytes > max_bytes) return;
    b.clear();
    kept.items[kept.count++] = std::move(b);
  }
  // How many buffers this thread keeps now (for tests).
  static std::size_t kept_now() { return gone ? 0 : kept.count; }

 private:
  struct list {
    std::array<Buffer, Kept> items{};
    std::size_t count = 0;
    ~list() { gone = true; }  // the buffers free themselves; later gives are dropped
  };
  static inline thread_local list kept;
  static inline thread_local bool gone = false;
};

// A buffer from its thread's spares for as long as it is in scope.
template <class Buffer>
class spare {
 public:
  spare() : b_(spares<Buffer>::take()) {}
  ~spare() { spares<Buffer>::give(std::move(b_)); }
  spare(const spare&) = delete;
  spare& operator=(const spare&) = delete;
  Buffer& operator*() { return b_; }
  Buffer* operator->() { return &b_; }

 private:
  Buffer b_;
};

}  // namespace okta_sidecar::net
