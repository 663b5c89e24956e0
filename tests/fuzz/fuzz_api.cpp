// Fuzz harness: the input bytes are a program of API calls (malloc, calloc, realloc,
// reallocarray, free / free_sized, posix_memalign, aligned_alloc, memalign, valloc, pvalloc,
// malloc_usable_size, trim) on a table of live blocks. A model records each block's requested
// size, alignment and fill byte; every call checks results (NULL/errno/EINVAL rules), alignment,
// usable sizes and the contents of blocks against it. Any mismatch aborts (a finding).
// Built as a libFuzzer target (clang -fsanitize=fuzzer) and as a replay binary (replay_main.cpp).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mpcalloc/mpcalloc.h"

namespace {

constexpr int kSlots = 32;
constexpr size_t kPage = 4096;
constexpr size_t kStride = 32749;  // big blocks: filled and checked every kStride bytes (one page
                                   // in eight: page faults, not checks, are the cost)
constexpr size_t kDense = 65536;  // up to this size every byte is filled and checked
constexpr size_t kAbsurd = size_t{1} << 40;

enum class Free : uint8_t { Plain, Sized, AlignedSized };

struct Live {
  unsigned char* p = nullptr;
  size_t size = 0;
  size_t align = 16;
  unsigned char fill = 0;
};

[[noreturn]] void finding(const char* what, size_t a, size_t b) {
  std::fprintf(stderr, "fuzz finding: %s (%zu, %zu)\n", what, a, b);
  std::abort();
}

struct Reader {
  const uint8_t* d;
  size_t n;
  size_t i = 0;
  bool more() const { return i < n; }
  uint8_t byte() { return i < n ? d[i++] : 0; }
  uint32_t u32() {
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = (v << 8) | byte();
    return v;
  }
};

// Sizes skewed to the interesting places: tiny, class edges, medium, huge, absurd.
size_t decode_size(Reader& r) {
  uint8_t kind = r.byte();
  uint32_t v = r.u32();
  switch (kind % 16) {
    case 0: case 1: case 2: return v % 64;
    case 3: case 4: return v % 1025;
    case 5: case 6: return v % 8193;
    case 7: case 8: return 8192 + v % (1 << 20);
    case 9: return (size_t{1} << 20) + v % (8 << 20);
    case 10: case 11: return (size_t{1} << (v % 24)) + (v >> 24) % 3 - 1;  // 2^k - 1, 2^k, 2^k + 1
    case 12: return v % 100000;
    case 13: return (v & 0x100) != 0 ? SIZE_MAX - v % 4096 : (SIZE_MAX >> 1) + v % 3 - 1;
    default: return v % 300;
  }
}
size_t decode_align(Reader& r) { return size_t{1} << (r.byte() % 24); }  // 1 B .. 8 MiB

// The bytes a fill covers: all of a block up to kDense bytes; of bigger ones every kStride-th
// byte and the last one. Dense ranges go through memset/memcmp (speed is executions per second).
unsigned char g_reference[kDense];

// Checks the filled bytes of a block of `n` bytes below `limit` against v; returns the first
// bad offset or SIZE_MAX.
size_t first_mismatch(const unsigned char* p, size_t n, unsigned char v, size_t limit) {
  if (n <= kDense) {
    size_t m = n < limit ? n : limit;
    std::memset(g_reference, v, m);
    if (std::memcmp(p, g_reference, m) == 0) return SIZE_MAX;
    for (size_t i = 0; i < m; ++i) {
      if (p[i] != v) return i;
    }
    return SIZE_MAX;
  }
  for (size_t i = 0; i < n && i < limit; i += kStride) {
    if (p[i] != v) return i;
  }
  if (n - 1 < limit && p[n - 1] != v) return n - 1;
  return SIZE_MAX;
}

// Alignment and usable size.
void check_shape(const Live& l) {
  if (reinterpret_cast<uintptr_t>(l.p) % l.align != 0) finding("misaligned", l.size, l.align);
  size_t u = mpcalloc_malloc_usable_size(l.p);
  if (u < l.size) finding("usable size below the request", u, l.size);
  // Loose upper bound: catches garbage, not rounding policy.
  if (u > 2 * l.size + l.align + (size_t{8} << 20)) finding("usable size absurd", u, l.size);
}

void check(const Live& l) {
  if (l.p == nullptr) return;
  check_shape(l);
  size_t bad = first_mismatch(l.p, l.size, l.fill, SIZE_MAX);
  if (bad != SIZE_MAX) finding("contents changed", bad, l.size);
}

// After realloc: the first `keep` bytes at q hold what `old` held (the bytes fill() wrote).
void check_kept(const Live& old, const void* q, size_t keep) {
  size_t bad = first_mismatch(static_cast<const unsigned char*>(q), old.size, old.fill, keep);
  if (bad != SIZE_MAX) finding("realloc lost contents", bad, keep);
}

void fill(Live& l, unsigned char v) {
  l.fill = v;
  if (l.size <= kDense) {
    std::memset(l.p, v, l.size);
    return;
  }
  for (size_t i = 0; i < l.size; i += kStride) l.p[i] = v;
  l.p[l.size - 1] = v;
}

// A block just returned by an allocation call.
Live admit(void* p, size_t size, size_t align, unsigned char v) {
  Live l;
  l.p = static_cast<unsigned char*>(p);
  l.size = size;
  l.align = align < 16 ? 16 : align;  // every block is at least max_align_t aligned
  check_shape(l);
  fill(l, v);
  return l;
}

void release(Live& l, Free how) {
  check(l);
  if (how == Free::Sized) {
    mpcalloc_free_sized(l.p, l.size);
  } else if (how == Free::AlignedSized && l.align > 16) {
    mpcalloc_free_aligned_sized(l.p, l.align, l.size);
  } else {
    mpcalloc_free(l.p);
  }
  l = Live{};
}

// A request that must fail: NULL (or the return code) with ENOMEM.
void expect_enomem(const void* p, const char* what, size_t n) {
  if (p != nullptr) finding(what, n, 1);
  if (errno != ENOMEM) finding(what, n, static_cast<size_t>(errno));
}

bool mul_overflows(size_t a, size_t b) {
  size_t out;
  return __builtin_mul_overflow(a, b, &out);
}

}  // namespace

// FUZZ_TRACE=1 prints every call (to reproduce a finding by hand).
static const bool g_trace = std::getenv("FUZZ_TRACE") != nullptr;
#define TRACE(...)                                  \
  do {                                              \
    if (g_trace) std::fprintf(stderr, __VA_ARGS__); \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Live live[kSlots];
  TRACE("--- program of %zu bytes\n", size);
  Reader r{data, size};
  int steps = 0;
  while (r.more() && steps++ < 160) {
    uint8_t op = r.byte();
    int slot = r.byte() % kSlots;
    Live& l = live[slot];
    auto v = static_cast<unsigned char>(op * 31 + steps);
    TRACE("op %d slot %d (p=%p size=%zu)\n", op % 16, slot, static_cast<void*>(l.p), l.size);
    switch (op % 16) {
      case 0:
      case 1: {  // malloc
        if (l.p) release(l, Free::Plain);
        size_t n = decode_size(r);
        errno = 0;
        void* p = mpcalloc_malloc(n);
        TRACE("  malloc(%zu) = %p\n", n, p);
        if (n >= kAbsurd) {
          expect_enomem(p, "malloc of an absurd size succeeded", n);
          break;
        }
        if (p == nullptr) finding("malloc failed", n, 0);
        l = admit(p, n, 16, v);
        break;
      }
      case 2: {  // calloc, including count * size overflow
        if (l.p) release(l, Free::Plain);
        size_t a = decode_size(r), b = r.byte();
        if (r.byte() % 8 == 0) b = SIZE_MAX / (a | 1) + 1 + r.byte();  // overflows (a > 0)
        else a %= 2000;
        errno = 0;
        void* p = mpcalloc_calloc(a, b);
        TRACE("  calloc(%zu, %zu) = %p\n", a, b, p);
        if (mul_overflows(a, b) || a * b >= kAbsurd) {
          expect_enomem(p, "calloc overflow succeeded", a);
          break;
        }
        if (p == nullptr) finding("calloc failed", a, b);
        Live z;
        z.p = static_cast<unsigned char*>(p);
        z.size = a * b;
        check(z);  // zeroed
        l = admit(p, a * b, 16, v);
        break;
      }
      case 3:
      case 14: {  // realloc (op 14: a small change of size, often in place)
        size_t n = (op % 16) == 3 ? decode_size(r) : l.size + (r.byte() % 64) - 24;
        if ((op % 16) == 14 && n > l.size + 40) n = l.size / 2;  // wrapped below 0: shrink
        errno = 0;
        void* q = mpcalloc_realloc(l.p, n);
        TRACE("  realloc(%p, %zu) = %p\n", static_cast<void*>(l.p), n, q);
        if (n == 0 && l.p != nullptr) {  // glibc: frees and returns NULL
          if (q != nullptr) finding("realloc(p, 0) returned memory", 0, 0);
          l = Live{};
          break;
        }
        if (n >= kAbsurd) {
          expect_enomem(q, "realloc to an absurd size succeeded", n);
          check(l);  // the old block is intact and still ours
          break;
        }
        if (q == nullptr) finding("realloc failed", n, 0);
        check_kept(l, q, l.size < n ? l.size : n);
        l = admit(q, n, 16, v);
        break;
      }
      case 4: {  // reallocarray, including overflow
        size_t a = decode_size(r) % 5000, b = 1 + r.byte() % 64;
        if (r.byte() % 8 == 0) a = SIZE_MAX / b + 1;
        errno = 0;
        void* q = mpcalloc_reallocarray(l.p, a, b);
        TRACE("  reallocarray(%p, %zu, %zu) = %p\n", static_cast<void*>(l.p), a, b, q);
        if (mul_overflows(a, b)) {
          expect_enomem(q, "reallocarray overflow succeeded", a);
          check(l);
          break;
        }
        size_t n = a * b;
        if (n == 0 && l.p != nullptr) {
          // glibc's reallocarray(p, 0, b) is realloc(p, 0): freed, NULL.
          if (q != nullptr) finding("reallocarray(p, 0) returned memory", 0, 0);
          l = Live{};
          break;
        }
        if (q == nullptr) finding("reallocarray failed", a, b);
        check_kept(l, q, l.size < n ? l.size : n);
        l = admit(q, n, 16, v);
        break;
      }
      case 5: {  // free, free_sized, free_aligned_sized
        if (l.p) release(l, static_cast<Free>(r.byte() % 3));
        break;
      }
      case 6: {  // posix_memalign, any alignment (bad ones: EINVAL, *out untouched)
        if (l.p) release(l, Free::Plain);
        uint8_t k = r.byte();
        size_t align = k % 4 == 0 ? size_t{8} * (1 + r.byte() % 64) : decode_align(r);
        size_t n = decode_size(r) % (4 << 20);
        void* p = reinterpret_cast<void*>(0x10);
        int rc = mpcalloc_posix_memalign(&p, align, n);
        TRACE("  posix_memalign(%zu, %zu) = %d %p\n", align, n, rc, p);
        bool valid = align >= sizeof(void*) && (align & (align - 1)) == 0;
        if (!valid) {
          if (rc != EINVAL) finding("posix_memalign accepted a bad alignment", align, 0);
          if (p != reinterpret_cast<void*>(0x10)) finding("posix_memalign wrote *out on EINVAL", align, 0);
          break;
        }
        if (rc != 0 || p == nullptr) finding("posix_memalign failed", align, n);
        l = admit(p, n, align, v);
        break;
      }
      case 7:
      case 8: {  // aligned_alloc (size a multiple of the alignment), memalign
        if (l.p) release(l, Free::Plain);
        size_t align = decode_align(r);
        size_t n = decode_size(r) % (4 << 20);
        void* p;
        if ((op % 16) == 7) {
          n = (n + align - 1) / align * align;
          p = mpcalloc_aligned_alloc(align, n);
          TRACE("  aligned_alloc(%zu, %zu) = %p\n", align, n, p);
        } else {
          p = mpcalloc_memalign(align, n);
          TRACE("  memalign(%zu, %zu) = %p\n", align, n, p);
        }
        if (p == nullptr) finding("aligned allocation failed", align, n);
        l = admit(p, n, align, v);
        break;
      }
      case 9: {  // valloc, pvalloc: page aligned; pvalloc rounds the size up to pages
        if (l.p) release(l, Free::Plain);
        size_t n = decode_size(r) % (3 << 20);
        bool pv = r.byte() % 2 == 0;
        void* p = pv ? mpcalloc_pvalloc(n) : mpcalloc_valloc(n);
        TRACE("  %s(%zu) = %p\n", pv ? "pvalloc" : "valloc", n, p);
        if (p == nullptr) finding("valloc failed", n, pv);
        if (pv) n = (n + kPage - 1) / kPage * kPage;  // all of it is usable
        l = admit(p, n, kPage, v);
        break;
      }
      case 10: {  // malloc_usable_size: all of it may be written without harming anything
        if (l.p == nullptr) break;
        size_t u = mpcalloc_malloc_usable_size(l.p);
        TRACE("  usable(%p) = %zu\n", static_cast<void*>(l.p), u);
        if (u < l.size) finding("usable size below the request", u, l.size);
        if (u - l.size <= kDense) {
          std::memset(l.p + l.size, 0xEE, u - l.size);
        } else {
          for (size_t i = l.size; i < u; i += kStride) l.p[i] = 0xEE;
          l.p[u - 1] = 0xEE;
        }
        for (auto& x : live) check(x);  // no neighbour was touched
        break;
      }
      case 11:  // check everything
        for (auto& x : live) check(x);
        break;
      case 12: {  // trim / collect now and then
        uint8_t k = r.byte();
        if (k % 32 == 0) mpcalloc_malloc_trim(0);
        if (k % 32 == 1) mpcalloc_collect(k & 64);
        break;
      }
      case 13: {  // malloc(0) and free(NULL)
        if (l.p) release(l, Free::Plain);
        void* p = mpcalloc_malloc(0);
        if (p == nullptr) finding("malloc(0) returned NULL", 0, 0);
        l = admit(p, 0, 16, v);
        mpcalloc_free(nullptr);
        break;
      }
      default: {  // free one and allocate the same size again (reuse of a freed block)
        if (l.p == nullptr) break;
        size_t n = l.size;
        release(l, Free::Plain);
        void* p = mpcalloc_malloc(n);
        if (p == nullptr) finding("malloc of a just-freed size failed", n, 0);
        l = admit(p, n, 16, v);
        break;
      }
    }
  }
  for (auto& l : live) {
    if (l.p) release(l, Free::Plain);
  }
  return 0;
}
