// Fuzz harness: the input bytes are a program of API calls (malloc, calloc, realloc, free,
// aligned allocations, usable_size, trim) on a table of live blocks. A model records each
// block's requested size, alignment and fill byte; every call checks contents, alignment
// and usable sizes against it. Any mismatch aborts (a finding).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mpcalloc/mpcalloc.h"

namespace {

constexpr int kSlots = 32;

struct Live {
  unsigned char* p;
  size_t size;
  size_t align;
  unsigned char fill;
  bool sparse;  // filled only every kStride bytes and at the end (big blocks)
};
constexpr size_t kStride = 4093;

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
    case 10: case 11: return (size_t{1} << (v % 22)) + (v >> 24) % 3 - 1;
    case 12: return v % 100000;
    case 13: return SIZE_MAX - v % 4096;
    default: return v % 300;
  }
}

void check(const Live& l) {
  if (l.p == nullptr) return;
  if (reinterpret_cast<uintptr_t>(l.p) % l.align != 0) finding("misaligned", l.size, l.align);
  size_t u = mpcalloc_malloc_usable_size(l.p);
  if (u < l.size) finding("usable below request", u, l.size);
  size_t step = l.sparse ? kStride : 1;
  for (size_t i = 0; i < l.size; i += step) {
    if (l.p[i] != l.fill) finding("contents changed", i, l.size);
  }
}

void fill(Live& l, unsigned char v) {
  l.fill = v;
  l.sparse = l.size > 65536;
  if (l.size == 0) return;
  if (!l.sparse) {
    std::memset(l.p, v, l.size);
  } else {
    for (size_t i = 0; i < l.size; i += kStride) l.p[i] = v;
  }
}

void release(Live& l) {
  check(l);
  mpcalloc_free(l.p);
  l = Live{nullptr, 0, 1, 0, false};
}

}  // namespace

// FUZZ_TRACE=1 prints every call (to reproduce a finding by hand).
static const bool g_trace = std::getenv("FUZZ_TRACE") != nullptr;
#define TRACE(...)                                  \
  do {                                              \
    if (g_trace) std::fprintf(stderr, __VA_ARGS__); \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Live live[kSlots] = {};
  TRACE("--- program of %zu bytes\n", size);
  for (auto& l : live) l.align = 1;
  Reader r{data, size};
  int steps = 0;
  while (r.more() && steps++ < 128) {
    uint8_t op = r.byte();
    int slot = r.byte() % kSlots;
    Live& l = live[slot];
    TRACE("op %d slot %d (p=%p size=%zu)\n", op % 8, slot, static_cast<void*>(l.p), l.size);
    switch (op % 8) {
      case 0:
      case 1: {  // malloc
        if (l.p) release(l);
        size_t n = decode_size(r);
        auto* p = static_cast<unsigned char*>(mpcalloc_malloc(n));
        TRACE("  malloc(%zu) = %p\n", n, static_cast<void*>(p));
        if (p == nullptr) {
          if (n < (size_t{1} << 40)) finding("malloc failed", n, 0);
          break;
        }
        l = Live{p, n, 16, 0, false};
        fill(l, static_cast<unsigned char>(op));
        break;
      }
      case 2: {  // calloc
        if (l.p) release(l);
        size_t a = decode_size(r) % 2000, b = r.byte();
        auto* p = static_cast<unsigned char*>(mpcalloc_calloc(a, b));
        TRACE("  calloc(%zu, %zu) = %p\n", a, b, static_cast<void*>(p));
        if (p == nullptr) finding("calloc failed", a, b);
        l = Live{p, a * b, 16, 0, false};
        check(l);  // must be zero
        fill(l, static_cast<unsigned char>(op + 1));
        break;
      }
      case 3: {  // realloc
        size_t n = decode_size(r);
        auto* q = static_cast<unsigned char*>(mpcalloc_realloc(l.p, n));
        TRACE("  realloc(%p, %zu) = %p\n", static_cast<void*>(l.p), n, static_cast<void*>(q));
        if (n == 0 && l.p != nullptr) {  // glibc: freed, NULL
          if (q != nullptr) finding("realloc(p, 0) returned memory", 0, 0);
          l = Live{nullptr, 0, 1, 0, false};
          break;
        }
        if (q == nullptr) {
          if (n < (size_t{1} << 40)) finding("realloc failed", n, 0);
          check(l);  // old block intact
          break;
        }
        size_t keep = l.size < n ? l.size : n;
        Live moved{q, keep, 16, l.fill, l.sparse};
        check(moved);
        l = Live{q, n, 16, l.fill, false};
        fill(l, static_cast<unsigned char>(l.fill + 1));
        break;
      }
      case 4:  // free
        if (l.p) release(l);
        break;
      case 5: {  // aligned
        if (l.p) release(l);
        size_t align = size_t{1} << (r.byte() % 24);
        size_t n = decode_size(r) % (4 << 20);
        void* p = nullptr;
        int rc = mpcalloc_posix_memalign(&p, align, n);
        TRACE("  posix_memalign(%zu, %zu) = %d %p\n", align, n, rc, p);
        if (align < sizeof(void*)) {
          if (rc != EINVAL) finding("posix_memalign accepted a bad alignment", align, 0);
          break;
        }
        if (rc != 0) finding("posix_memalign failed", align, n);
        l = Live{static_cast<unsigned char*>(p), n, align, 0, false};
        fill(l, static_cast<unsigned char>(op ^ 0x5a));
        break;
      }
      case 6:  // check everything
        for (auto& x : live) check(x);
        break;
      default:  // trim now and then
        if (r.byte() % 64 == 0) mpcalloc_malloc_trim(0);
        break;
    }
  }
  for (auto& l : live) {
    if (l.p) release(l);
  }
  return 0;
}
