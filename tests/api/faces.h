// The two faces of the API under test (the mpcalloc_* functions and the standard names) and
// the helpers every api test shares. One set of test bodies is instantiated once per face.
#pragma once
// realloc-family wrappers below hand pointers on; GCC's use-after-free analysis cannot tell.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuse-after-free"
#endif
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <malloc.h>

#include "mpcalloc/mpcalloc.h"
#include "support/rng.h"

// Every call goes through a function pointer the compiler cannot see through. Compilers treat
// the standard names as builtins and assume, for instance, that posix_memalign (g++) or
// aligned_alloc/memalign/valloc (clang) never write errno, which folds the errno checks of
// these tests away (CMakeLists.txt also passes -fno-builtin; this keeps the tests honest
// whatever the flags).
template <typename Fn>
inline Fn* opaque_fn(Fn* f) {
  Fn* volatile v = f;
  return v;
}

struct PrefixedFace {
  static constexpr const char* kName = "prefixed";
  static void* malloc(size_t n) { return opaque_fn(&mpcalloc_malloc)(n); }
  static void free(void* p) { opaque_fn(&mpcalloc_free)(p); }
  static void* calloc(size_t a, size_t b) { return opaque_fn(&mpcalloc_calloc)(a, b); }
  static void* realloc(void* p, size_t n) { return opaque_fn(&mpcalloc_realloc)(p, n); }
  static void* reallocarray(void* p, size_t a, size_t b) { return opaque_fn(&mpcalloc_reallocarray)(p, a, b); }
  static int posix_memalign(void** out, size_t a, size_t n) { return opaque_fn(&mpcalloc_posix_memalign)(out, a, n); }
  static void* aligned_alloc(size_t a, size_t n) { return opaque_fn(&mpcalloc_aligned_alloc)(a, n); }
  static void* memalign(size_t a, size_t n) { return opaque_fn(&mpcalloc_memalign)(a, n); }
  static void* valloc(size_t n) { return opaque_fn(&mpcalloc_valloc)(n); }
  static void* pvalloc(size_t n) { return opaque_fn(&mpcalloc_pvalloc)(n); }
  static size_t usable(void* p) { return opaque_fn(&mpcalloc_malloc_usable_size)(p); }
  static int trim(size_t pad) { return opaque_fn(&mpcalloc_malloc_trim)(pad); }
};

#if MPCALLOC_TEST_FACE_OVERRIDE
struct OverrideFace {
  static constexpr const char* kName = "override";
  static void* malloc(size_t n) { return opaque_fn(&::malloc)(n); }
  static void free(void* p) { opaque_fn(&::free)(p); }
  static void* calloc(size_t a, size_t b) { return opaque_fn(&::calloc)(a, b); }
  static void* realloc(void* p, size_t n) { return opaque_fn(&::realloc)(p, n); }
  static void* reallocarray(void* p, size_t a, size_t b) { return opaque_fn(&::reallocarray)(p, a, b); }
  static int posix_memalign(void** out, size_t a, size_t n) { return opaque_fn(&::posix_memalign)(out, a, n); }
  static void* aligned_alloc(size_t a, size_t n) { return opaque_fn(&::aligned_alloc)(a, n); }
  static void* memalign(size_t a, size_t n) { return opaque_fn(&::memalign)(a, n); }
  static void* valloc(size_t n) { return opaque_fn(&::valloc)(n); }
  static void* pvalloc(size_t n) { return opaque_fn(&::pvalloc)(n); }
  static size_t usable(void* p) { return opaque_fn(&::malloc_usable_size)(p); }
  static int trim(size_t pad) { return opaque_fn(&::malloc_trim)(pad); }
};
#endif

// Sanitizer builds run the prefixed face only, with smaller loop counts (each checked byte
// costs a shadow access there).
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define MPCALLOC_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define MPCALLOC_TEST_SANITIZED 1
#endif
#endif
#ifndef MPCALLOC_TEST_SANITIZED
#define MPCALLOC_TEST_SANITIZED 0
#endif
// Cross builds run under user-mode emulation (qemu), which is about as slow.
#ifndef MPCALLOC_TEST_EMULATED
#define MPCALLOC_TEST_EMULATED 0
#endif
constexpr int kWorkDivisor = MPCALLOC_TEST_SANITIZED || MPCALLOC_TEST_EMULATED ? 4 : 1;

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

// Sizes routed through a volatile so the compiler cannot see (and warn about, or fold away)
// deliberately absurd requests.
inline size_t opaque(size_t n) {
  volatile size_t v = n;
  return v;
}

inline bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// A byte pattern derived from a key (by default the block address) and the offset, so that a
// block overwritten by a neighbour's pattern is told apart from its own.
inline unsigned char pattern_byte(const void* key, size_t i) {
  auto a = reinterpret_cast<uintptr_t>(key);
  return static_cast<unsigned char>((a >> 4) * 31 + (a >> 12) * 13 + i * 7 + (i >> 8) + 1);
}
inline void fill_pattern(void* p, size_t n, const void* as_if = nullptr) {
  const void* key = as_if != nullptr ? as_if : p;
  auto* c = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) c[i] = pattern_byte(key, i);
}
inline bool check_pattern(const void* p, size_t n, const void* as_if = nullptr) {
  const void* key = as_if != nullptr ? as_if : p;
  const auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (c[i] != pattern_byte(key, i)) return false;
  }
  return true;
}

// For big blocks: the first KiB, one byte in every 61 after it (every page is touched) and,
// unless only a prefix is looked at, the last KiB. The sampled positions do not depend on the
// block size, so a prefix of a sparsely filled block can be checked after a shrink.
template <typename Visit>
inline bool for_sparse(size_t n, bool with_tail, Visit visit) {
  size_t head = n < kKiB ? n : kKiB;
  for (size_t i = 0; i < head; ++i) {
    if (!visit(i)) return false;
  }
  for (size_t i = head; i < n; i += 61) {
    if (!visit(i)) return false;
  }
  if (with_tail) {
    for (size_t i = n > head + kKiB ? n - kKiB : head; i < n; ++i) {
      if (!visit(i)) return false;
    }
  }
  return true;
}
inline void fill_sparse(void* p, size_t n, const void* key) {
  auto* c = static_cast<unsigned char*>(p);
  for_sparse(n, true, [&](size_t i) {
    c[i] = pattern_byte(key, i);
    return true;
  });
}
inline bool check_sparse(const void* p, size_t n, const void* key, bool with_tail = true) {
  const auto* c = static_cast<const unsigned char*>(p);
  return for_sparse(n, with_tail, [&](size_t i) { return c[i] == pattern_byte(key, i); });
}

// Blocks up to 256 KiB are filled entirely, bigger ones sparsely.
constexpr size_t kFullFillMax = 256 * kKiB;
inline void fill_block(void* p, size_t n, const void* key) {
  if (n <= kFullFillMax) fill_pattern(p, n, key);
  else fill_sparse(p, n, key);
}
inline bool check_block(const void* p, size_t n, const void* key) {
  return n <= kFullFillMax ? check_pattern(p, n, key) : check_sparse(p, n, key);
}
// The first `keep` bytes of a block that was filled with fill_block(p, filled, key).
inline bool check_prefix(const void* p, size_t keep, size_t filled, const void* key) {
  if (keep > filled) keep = filled;
  if (filled <= kFullFillMax) return check_pattern(p, keep, key);
  return check_sparse(p, keep, key, keep == filled);
}

inline mpcalloc_stats_t stats_now() {
  mpcalloc_stats_t s;
  mpcalloc_stats_get(&s);
  return s;
}

using mpcalloc::test::Rng;  // Rng::seeded(n): deterministic sizes per thread

// Mixed sizes: mostly small, some medium, a few huge (above every segment-backed class).
inline size_t mixed_size(Rng& r, size_t i) {
  if (i % 97 == 0) return 2 * kMiB + r.below(3 * kMiB);
  if (i % 9 == 0) return 9 * kKiB + r.below(250 * kKiB);
  return 1 + r.below(1024);
}
