// The kernel's memory calls through libc's own mmap/munmap/mremap/madvise. Never raw syscalls:
// MPI libraries (UCX's libucm, Open MPI's memory patcher) and LD_PRELOAD interposers hook these
// symbols to keep RDMA registration caches coherent, and a release they cannot see lets a later
// buffer at the same address reuse a stale registration. errno is saved and restored around
// every call: failures are reported by return value, and the api layer sets errno itself.
#include "os/os_memory.h"

#include <atomic>
#include <cerrno>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__SANITIZE_THREAD__)
#define MPCALLOC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MPCALLOC_TSAN 1
#endif
#endif
#ifdef MPCALLOC_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace mpcalloc::os {
namespace {

std::atomic<uint64_t> g_mmap{0}, g_munmap{0}, g_mremap{0}, g_madvise{0};
std::atomic<unsigned long> g_fail_countdown{0};

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

// Keeps errno as the caller left it: a libc call that fails on a path the allocator recovers
// from (a failed in-place mremap, say) must not leave a stray errno behind a successful malloc.
class ErrnoKeeper {
 public:
  ErrnoKeeper() : saved_(errno) {}
  ~ErrnoKeeper() { errno = saved_; }
  ErrnoKeeper(const ErrnoKeeper&) = delete;
  ErrnoKeeper& operator=(const ErrnoKeeper&) = delete;

 private:
  int saved_;
};

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

void* map_with(void* hint, size_t size, int prot) {
  if (injected_failure()) return nullptr;
  g_mmap.fetch_add(1, std::memory_order_relaxed);
  ErrnoKeeper keep;
  void* p = ::mmap(hint, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  kernel_acquire();
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace

size_t page_size() {
  static std::atomic<size_t> cached{0};
  size_t p = cached.load(std::memory_order_relaxed);
  if (p == 0) {
    p = static_cast<size_t>(getauxval(AT_PAGESZ));
    if (p == 0) p = kMinPageSize;
    cached.store(p, std::memory_order_relaxed);
  }
  return p;
}

void* map(size_t size, void* hint) { return map_with(hint, size, PROT_READ | PROT_WRITE); }

void* reserve(size_t size) { return map_with(nullptr, size, PROT_NONE); }

bool map_over_reserved(void* addr, size_t size) {
  if (injected_failure()) return false;
  g_mmap.fetch_add(1, std::memory_order_relaxed);
  ErrnoKeeper keep;
  void* p = ::mmap(addr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  kernel_acquire();
  return p == addr;
}

bool unmap(void* addr, size_t size) {
  if (size == 0) return true;
  g_munmap.fetch_add(1, std::memory_order_relaxed);
  ErrnoKeeper keep;
  kernel_release();
  return ::munmap(addr, size) == 0;
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
  ErrnoKeeper keep;
  kernel_release();
  void* r = ::mremap(addr, old_size, new_size, 0);
  kernel_acquire();
  return r != MAP_FAILED;
}

bool remap_to(void* addr, size_t old_size, size_t new_size, void* target) {
  if (injected_failure()) return false;
  g_mremap.fetch_add(1, std::memory_order_relaxed);
  ErrnoKeeper keep;
  kernel_release();
  // Hooks must hear that [addr, addr+old_size) is going away, but some forward only four
  // arguments (UCX 1.13's mremap hook drops new_address: the kernel then moved the block to
  // address 0 as root, or anywhere). So: announce the move with a no-op mremap through libc,
  // which every hook reports as the old range leaving, then move with the kernel call itself;
  // the target is our own PROT_NONE reservation, which holds nothing anyone registered.
  ::mremap(addr, old_size, old_size, 0);
  long r = syscall(SYS_mremap, addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  kernel_acquire();
  return r == reinterpret_cast<long>(target);
}

bool discard(void* addr, size_t size) {
  if (injected_failure()) return false;
  g_madvise.fetch_add(1, std::memory_order_relaxed);
  ErrnoKeeper keep;
  return ::madvise(addr, size, MADV_DONTNEED) == 0;
}

bool purge(void* addr, size_t size, bool lazy) {
  if (!lazy) return discard(addr, size);
  if (injected_failure()) return false;
  g_madvise.fetch_add(1, std::memory_order_relaxed);
  ErrnoKeeper keep;
  if (::madvise(addr, size, MADV_FREE) == 0) return true;
  return ::madvise(addr, size, MADV_DONTNEED) == 0;
}

bool advise_huge_pages(void* addr, size_t size, bool on) {
  ErrnoKeeper keep;
  return ::madvise(addr, size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0;
}

OsCounters counters() {
  return {g_mmap.load(std::memory_order_relaxed), g_munmap.load(std::memory_order_relaxed),
          g_mremap.load(std::memory_order_relaxed), g_madvise.load(std::memory_order_relaxed)};
}

void fail_after(unsigned long n) { g_fail_countdown.store(n, std::memory_order_relaxed); }

}  // namespace mpcalloc::os
