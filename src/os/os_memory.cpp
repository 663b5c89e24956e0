// Raw syscalls for memory mapping. No libc wrappers that could set errno behind our back or
// be intercepted; errno is managed by the api layer.
#include "os/os_memory.h"

#include <atomic>
#include <sys/mman.h>
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#include <sanitizer/tsan_interface.h>
#endif
#endif
#include <sys/syscall.h>
#include <unistd.h>

namespace mpcalloc::os {
namespace {

std::atomic<uint64_t> g_mmap{0}, g_munmap{0}, g_mremap{0}, g_madvise{0};
std::atomic<unsigned long> g_fail_countdown{0};

inline long raw6(long nr, long a, long b, long c, long d, long e, long f) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

// True when fault injection says this call must fail.
inline bool injected_failure() {
  unsigned long n = g_fail_countdown.load(std::memory_order_relaxed);
  if (__builtin_expect(n == 0, 1)) return false;
  while (n != 0) {
    if (g_fail_countdown.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
      return n == 1;
    }
  }
  return false;
}

inline bool is_error(long r) { return r < 0 && r > -4096; }

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
// Under a sanitizer, go through libc so the sanitizer's interceptors see mappings come and go
// (it resets its shadow state on munmap; a raw syscall would leave stale state behind and give
// false reports when the kernel reuses the address).
inline long sys_mmap(long addr, long len, long prot, long flags) {
  void* p = mmap(reinterpret_cast<void*>(addr), static_cast<size_t>(len), static_cast<int>(prot),
                 static_cast<int>(flags), -1, 0);
  return p == MAP_FAILED ? -12 : reinterpret_cast<long>(p);
}
inline long sys_munmap(long addr, long len) {
  return munmap(reinterpret_cast<void*>(addr), static_cast<size_t>(len)) == 0 ? 0 : -22;
}
#else
inline long sys_mmap(long addr, long len, long prot, long flags) {
  return raw6(SYS_mmap, addr, len, prot, flags, -1, 0);
}
inline long sys_munmap(long addr, long len) { return raw6(SYS_munmap, addr, len, 0, 0, 0, 0); }
#endif

#if defined(__SANITIZE_THREAD__)
#define MPCALLOC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MPCALLOC_TSAN 1
#endif
#endif
#ifdef MPCALLOC_TSAN
// ThreadSanitizer does not see mremap: the range a block moves away from or shrinks out of
// keeps its old accesses, and when the kernel hands it out again (to an in-place growth) they
// look unordered with the new owner's. The kernel orders them; tell TSan so: every call that
// may unmap releases, every call that may map acquires.
constinit char g_tsan_kernel;
inline void kernel_release() { __tsan_release(&g_tsan_kernel); }
inline void kernel_acquire() { __tsan_acquire(&g_tsan_kernel); }
#else
inline void kernel_release() {}
inline void kernel_acquire() {}
#endif

}  // namespace

void* map(size_t size, void* hint) {
  if (injected_failure()) return nullptr;
  g_mmap.fetch_add(1, std::memory_order_relaxed);
  long r = sys_mmap(reinterpret_cast<long>(hint), static_cast<long>(size),
                    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
  kernel_acquire();
  return is_error(r) ? nullptr : reinterpret_cast<void*>(r);
}

void* reserve(size_t size) {
  if (injected_failure()) return nullptr;
  g_mmap.fetch_add(1, std::memory_order_relaxed);
  long r = sys_mmap(0, static_cast<long>(size), PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
  kernel_acquire();
  return is_error(r) ? nullptr : reinterpret_cast<void*>(r);
}

bool unmap(void* addr, size_t size) {
  if (size == 0) return true;
  g_munmap.fetch_add(1, std::memory_order_relaxed);
  kernel_release();
  return !is_error(sys_munmap(reinterpret_cast<long>(addr), static_cast<long>(size)));
}

MapResult map_aligned(size_t size, size_t alignment) {
  // A hint at the end of the last aligned mapping often gives an aligned result in one call.
  static std::atomic<uintptr_t> next_hint{0};
  uintptr_t hint = next_hint.load(std::memory_order_relaxed);
  if (hint != 0) {
    void* p = map(size, reinterpret_cast<void*>(hint));
    if (p == nullptr) return {nullptr, false};
    if ((reinterpret_cast<uintptr_t>(p) & (alignment - 1)) == 0) {
      next_hint.store(reinterpret_cast<uintptr_t>(p) + size, std::memory_order_relaxed);
      return {p, true};
    }
    unmap(p, size);
  }
  // Over-map and trim both ends.
  size_t over = size + alignment;
  if (over < size) return {nullptr, false};
  void* raw = map(over);
  if (raw == nullptr) return {nullptr, false};
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + alignment - 1) & ~(alignment - 1);
  unmap(raw, aligned - start);
  unmap(reinterpret_cast<void*>(aligned + size), start + over - (aligned + size));
  next_hint.store(aligned + size, std::memory_order_relaxed);
  return {reinterpret_cast<void*>(aligned), true};
}

bool remap_in_place(void* addr, size_t old_size, size_t new_size) {
  if (injected_failure()) return false;
  g_mremap.fetch_add(1, std::memory_order_relaxed);
  kernel_release();
  long r = raw6(SYS_mremap, reinterpret_cast<long>(addr), static_cast<long>(old_size),
                static_cast<long>(new_size), 0, 0, 0);
  kernel_acquire();
  return !is_error(r);
}

bool remap_to(void* addr, size_t old_size, size_t new_size, void* target) {
  if (injected_failure()) return false;
  g_mremap.fetch_add(1, std::memory_order_relaxed);
  kernel_release();
  long r = raw6(SYS_mremap, reinterpret_cast<long>(addr), static_cast<long>(old_size),
                static_cast<long>(new_size), MREMAP_MAYMOVE | MREMAP_FIXED,
                reinterpret_cast<long>(target), 0);
  kernel_acquire();
  return !is_error(r);
}

bool discard(void* addr, size_t size) {
  if (injected_failure()) return false;
  g_madvise.fetch_add(1, std::memory_order_relaxed);
  return !is_error(raw6(SYS_madvise, reinterpret_cast<long>(addr), static_cast<long>(size),
                        MADV_DONTNEED, 0, 0, 0));
}

OsCounters counters() {
  return {g_mmap.load(std::memory_order_relaxed), g_munmap.load(std::memory_order_relaxed),
          g_mremap.load(std::memory_order_relaxed), g_madvise.load(std::memory_order_relaxed)};
}

void fail_after(unsigned long n) { g_fail_countdown.store(n, std::memory_order_relaxed); }

}  // namespace mpcalloc::os
