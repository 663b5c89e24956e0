// The malloc family, under the mpcalloc_ prefix and (MPCALLOC_OVERRIDE) the standard names,
// with glibc/POSIX semantics: errno ENOMEM/EINVAL and NULL, never abort on out of memory.
#include <cerrno>
#include <cstring>
#include <malloc.h>

#include "api/api_common.h"
#include "base/options.h"
#include "heap/heap.h"
#include "os/os_memory.h"
#include "source/block_source.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

namespace {

inline bool mul_overflows(size_t a, size_t b, size_t* out) { return __builtin_mul_overflow(a, b, out); }

inline void* calloc_impl(size_t count, size_t size) {
  size_t total;
  if (mul_overflows(count, size, &total) || total > PTRDIFF_MAX) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total <= base::kSmallMax) {
    // No small block is known to be zero, so a small calloc is a malloc and a memset: through
    // the inline fast path, not the general slow path (which checks each block it pops).
    void* p = heap::malloc_fast(total);
    if (p == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    return std::memset(p, 0, total);
  }
  void* p = heap::allocate(total, 16, true);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

inline void* realloc_impl(void* p, size_t size) {
  if (p != nullptr && size == 0) {  // glibc: frees and returns NULL
    heap::deallocate(p, "realloc");
    return nullptr;
  }
  void* q = heap::reallocate(p, size);
  if (q == nullptr) errno = ENOMEM;
  return q;
}

inline void* reallocarray_impl(void* p, size_t count, size_t size) {
  size_t total;
  if (mul_overflows(count, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return realloc_impl(p, total);
}

inline int posix_memalign_impl(void** out, size_t align, size_t size) {
  if (align % sizeof(void*) != 0 || !base::is_pow2(align)) return EINVAL;
  void* p = heap::aligned_fast(size, align);
  if (p == nullptr) {
    errno = ENOMEM;  // glibc sets errno too when it returns ENOMEM (EINVAL leaves it alone)
    return ENOMEM;
  }
  *out = p;
  return 0;
}

inline void* pvalloc_impl(size_t size) {
  size_t rounded = base::align_up(size, os::page_size());
  if (rounded < size) {
    errno = ENOMEM;
    return nullptr;
  }
  return api::memalign_impl(os::page_size(), rounded == 0 ? os::page_size() : rounded);
}

inline int trim_impl() { return heap::trim() ? 1 : 0; }

[[maybe_unused]] struct mallinfo2 mallinfo2_impl() {
  source::SourceStats s = source::stats();
  struct mallinfo2 mi;
  std::memset(&mi, 0, sizeof(mi));
  mi.arena = s.mapped_bytes - s.huge_bytes;
  mi.ordblks = 1;
  mi.hblks = s.huge_count;
  mi.hblkhd = s.huge_bytes;
  mi.uordblks = s.mapped_bytes > s.cached_bytes ? s.mapped_bytes - s.cached_bytes : 0;
  mi.fordblks = s.cached_bytes;
  mi.usmblks = s.peak_mapped_bytes;
  return mi;
}

}  // namespace

// ---- prefixed face: always there ----
MPCALLOC_EXPORT void* mpcalloc_malloc(size_t size) { return heap::malloc_fast(size); }
MPCALLOC_EXPORT void mpcalloc_free(void* p) { heap::free_entry(p); }
MPCALLOC_EXPORT void* mpcalloc_calloc(size_t n, size_t s) { return calloc_impl(n, s); }
MPCALLOC_EXPORT void* mpcalloc_realloc(void* p, size_t s) { return realloc_impl(p, s); }
MPCALLOC_EXPORT void* mpcalloc_reallocarray(void* p, size_t n, size_t s) { return reallocarray_impl(p, n, s); }
MPCALLOC_EXPORT int mpcalloc_posix_memalign(void** out, size_t a, size_t s) { return posix_memalign_impl(out, a, s); }
MPCALLOC_EXPORT void* mpcalloc_aligned_alloc(size_t a, size_t s) { return api::memalign_impl(a, s); }
MPCALLOC_EXPORT void* mpcalloc_memalign(size_t a, size_t s) { return api::memalign_impl(a, s); }
MPCALLOC_EXPORT void* mpcalloc_valloc(size_t s) { return api::memalign_impl(os::page_size(), s); }
MPCALLOC_EXPORT void* mpcalloc_pvalloc(size_t s) { return pvalloc_impl(s); }
MPCALLOC_EXPORT size_t mpcalloc_malloc_usable_size(void* p) { return heap::usable_size(p); }
MPCALLOC_EXPORT int mpcalloc_malloc_trim(size_t) { return trim_impl(); }
MPCALLOC_EXPORT void mpcalloc_free_sized(void* p, size_t) { heap::free_entry(p); }
MPCALLOC_EXPORT void mpcalloc_free_aligned_sized(void* p, size_t, size_t) { heap::free_entry(p); }
MPCALLOC_EXPORT void mpcalloc_collect(int) { heap::trim(); }
MPCALLOC_EXPORT void mpcalloc_test_fail_os_after(unsigned long n) { os::fail_after(n); }

#if MPCALLOC_OVERRIDE
// ---- standard names (LD_PRELOAD / link) ----
MPCALLOC_EXPORT void* malloc(size_t size) { return heap::malloc_fast(size); }
MPCALLOC_EXPORT void free(void* p) { heap::free_entry(p); }
MPCALLOC_EXPORT void* calloc(size_t n, size_t s) { return calloc_impl(n, s); }
MPCALLOC_EXPORT void* realloc(void* p, size_t s) { return realloc_impl(p, s); }
MPCALLOC_EXPORT void* reallocarray(void* p, size_t n, size_t s) { return reallocarray_impl(p, n, s); }
MPCALLOC_EXPORT int posix_memalign(void** out, size_t a, size_t s) { return posix_memalign_impl(out, a, s); }
MPCALLOC_EXPORT void* aligned_alloc(size_t a, size_t s) { return api::memalign_impl(a, s); }
MPCALLOC_EXPORT void* memalign(size_t a, size_t s) { return api::memalign_impl(a, s); }
MPCALLOC_EXPORT void* valloc(size_t s) { return api::memalign_impl(os::page_size(), s); }
MPCALLOC_EXPORT void* pvalloc(size_t s) { return pvalloc_impl(s); }
MPCALLOC_EXPORT size_t malloc_usable_size(void* p) { return heap::usable_size(p); }
MPCALLOC_EXPORT int malloc_trim(size_t) { return trim_impl(); }
MPCALLOC_EXPORT void free_sized(void* p, size_t) { heap::free_entry(p); }
MPCALLOC_EXPORT void free_aligned_sized(void* p, size_t, size_t) { heap::free_entry(p); }
MPCALLOC_EXPORT struct mallinfo2 mallinfo2() { return mallinfo2_impl(); }
MPCALLOC_EXPORT struct mallinfo mallinfo() {
  struct mallinfo2 m2 = mallinfo2_impl();
  struct mallinfo m;
  m.arena = static_cast<int>(m2.arena);
  m.ordblks = static_cast<int>(m2.ordblks);
  m.smblks = static_cast<int>(m2.smblks);
  m.hblks = static_cast<int>(m2.hblks);
  m.hblkhd = static_cast<int>(m2.hblkhd);
  m.usmblks = static_cast<int>(m2.usmblks);
  m.fsmblks = static_cast<int>(m2.fsmblks);
  m.uordblks = static_cast<int>(m2.uordblks);
  m.fordblks = static_cast<int>(m2.fordblks);
  m.keepcost = static_cast<int>(m2.keepcost);
  return m;
}
// glibc's tunables, mapped to the nearest mpcalloc option (docs/USAGE.md): M_TRIM_THRESHOLD is
// how much free memory may stay before it goes back, i.e. cache_max; the rest describe glibc's
// own arenas and mmap threshold, which mpcalloc does not have: accepted and ignored, as glibc
// itself accepts them. 1 on success, 0 for a parameter glibc does not know or a bad value.
MPCALLOC_EXPORT int mallopt(int param, int value) {
  switch (param) {
    case M_TRIM_THRESHOLD:
      if (value < 0 || !base::option_set_value(base::kOptCacheMax, value)) return 0;
      heap::apply_options();
      return 1;
    case M_MXFAST: return value >= 0 && value <= 160 ? 1 : 0;
    case M_TOP_PAD: case M_MMAP_THRESHOLD: case M_MMAP_MAX: case M_CHECK_ACTION:
    case M_PERTURB: case M_ARENA_TEST: case M_ARENA_MAX:
      return 1;
    default:
      return 0;
  }
}
MPCALLOC_EXPORT void malloc_stats() { mpcalloc_stats_print(2, 0); }

// glibc-internal names some programs and libraries call directly.
MPCALLOC_EXPORT void* __libc_malloc(size_t size) { return heap::malloc_fast(size); }
MPCALLOC_EXPORT void __libc_free(void* p) { heap::free_entry(p); }
MPCALLOC_EXPORT void* __libc_calloc(size_t n, size_t s) { return calloc_impl(n, s); }
MPCALLOC_EXPORT void* __libc_realloc(void* p, size_t s) { return realloc_impl(p, s); }
MPCALLOC_EXPORT void* __libc_memalign(size_t a, size_t s) { return api::memalign_impl(a, s); }
MPCALLOC_EXPORT void* __libc_valloc(size_t s) { return api::memalign_impl(os::page_size(), s); }
MPCALLOC_EXPORT void* __libc_pvalloc(size_t s) { return pvalloc_impl(s); }
MPCALLOC_EXPORT int __posix_memalign(void** out, size_t a, size_t s) { return posix_memalign_impl(out, a, s); }
#endif
