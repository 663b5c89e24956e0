// The two faces of the API under test: the mpcalloc_* functions and the standard names.
#pragma once
// realloc-family wrappers below hand pointers on; GCC's use-after-free analysis cannot tell.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
#include <cstddef>
#include <cstdlib>
#include <malloc.h>

#include "mpcalloc/mpcalloc.h"

struct PrefixedFace {
  static constexpr const char* kName = "prefixed";
  static void* malloc(size_t n) { return mpcalloc_malloc(n); }
  static void free(void* p) { mpcalloc_free(p); }
  static void* calloc(size_t a, size_t b) { return mpcalloc_calloc(a, b); }
  static void* realloc(void* p, size_t n) { return mpcalloc_realloc(p, n); }
  static void* reallocarray(void* p, size_t a, size_t b) { return mpcalloc_reallocarray(p, a, b); }
  static int posix_memalign(void** out, size_t a, size_t n) { return mpcalloc_posix_memalign(out, a, n); }
  static void* aligned_alloc(size_t a, size_t n) { return mpcalloc_aligned_alloc(a, n); }
  static void* memalign(size_t a, size_t n) { return mpcalloc_memalign(a, n); }
  static void* valloc(size_t n) { return mpcalloc_valloc(n); }
  static void* pvalloc(size_t n) { return mpcalloc_pvalloc(n); }
  static size_t usable(void* p) { return mpcalloc_malloc_usable_size(p); }
  static int trim(size_t pad) { return mpcalloc_malloc_trim(pad); }
};

#if MPCALLOC_TEST_FACE_OVERRIDE
struct OverrideFace {
  static constexpr const char* kName = "override";
  static void* malloc(size_t n) { return ::malloc(n); }
  static void free(void* p) { ::free(p); }
  static void* calloc(size_t a, size_t b) { return ::calloc(a, b); }
  static void* realloc(void* p, size_t n) { return ::realloc(p, n); }
  static void* reallocarray(void* p, size_t a, size_t b) { return ::reallocarray(p, a, b); }
  static int posix_memalign(void** out, size_t a, size_t n) { return ::posix_memalign(out, a, n); }
  static void* aligned_alloc(size_t a, size_t n) { return ::aligned_alloc(a, n); }
  static void* memalign(size_t a, size_t n) { return ::memalign(a, n); }
  static void* valloc(size_t n) { return ::valloc(n); }
  static void* pvalloc(size_t n) { return ::pvalloc(n); }
  static size_t usable(void* p) { return ::malloc_usable_size(p); }
  static int trim(size_t pad) { return ::malloc_trim(pad); }
};
#endif

// Sizes routed through a volatile so the compiler cannot see (and warn about, or fold away)
// deliberately absurd requests.
inline size_t opaque(size_t n) {
  volatile size_t v = n;
  return v;
}

// A byte pattern derived from the block address and offset, to detect any overlap.
inline unsigned char pattern_byte(const void* block, size_t i) {
  auto a = reinterpret_cast<uintptr_t>(block);
  return static_cast<unsigned char>((a >> 4) * 31 + i * 7 + 1);
}
inline void fill_pattern(void* p, size_t n) {
  auto* c = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) c[i] = pattern_byte(p, i);
}
inline bool check_pattern(const void* p, size_t n, const void* as_if = nullptr) {
  const void* key = as_if != nullptr ? as_if : p;
  const auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (c[i] != pattern_byte(key, i)) return false;
  }
  return true;
}
