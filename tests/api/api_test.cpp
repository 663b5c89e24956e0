// glibc/POSIX semantics of the malloc family, checked through every face this binary has.
// The expected results were taken from glibc 2.36 (Debian 12) where POSIX leaves a choice.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include "arch/arch.h"
#include "faces.h"

template <typename F>
class Api : public ::testing::Test {};

#if MPCALLOC_TEST_FACE_OVERRIDE
using Faces = ::testing::Types<OverrideFace>;
#else
using Faces = ::testing::Types<PrefixedFace>;
#endif
struct FaceNames {
  template <typename F>
  static std::string GetName(int) { return F::kName; }
};
TYPED_TEST_SUITE(Api, Faces, FaceNames);

// ------------------------------------------------------------------------------ malloc

TYPED_TEST(Api, MallocZeroGivesUniqueFreeablePointers) {
  using F = TypeParam;
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) {
    void* p = F::malloc(0);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned(p, 16));
    for (void* q : v) ASSERT_NE(p, q);
    v.push_back(p);
  }
  for (void* p : v) F::free(p);
  F::free(nullptr);  // no-op
}

TYPED_TEST(Api, EverySizeAlignedUsableAndWritable) {
  using F = TypeParam;
  // Every block stays live while all the others are written to their whole usable size, so a
  // block whose usable size overlaps a neighbour shows up as a broken pattern.
  std::vector<std::pair<void*, size_t>> blocks;
  auto check_one = [&](size_t n) {
    void* p = F::malloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(aligned(p, 16)) << n;
    size_t u = F::usable(p);
    EXPECT_GE(u, n) << n;
    fill_block(p, u, p);  // the whole usable size is ours to write
    blocks.emplace_back(p, u);
  };
  for (size_t n = 1; n <= 4096; ++n) check_one(n);
  for (size_t n = 4096; n <= 70000; n += 61) check_one(n);
  for (size_t n = 1; n <= 64 * kMiB; n *= 2) {
    check_one(n);
    check_one(n + 1);
    check_one(n - (n > 1 ? 1 : 0));
  }
  for (auto& [p, u] : blocks) {
    ASSERT_TRUE(check_block(p, u, p)) << "block of usable size " << u << " was overwritten";
  }
  for (auto& [p, u] : blocks) F::free(p);
}

TYPED_TEST(Api, ManySameSizeNeighboursKeepTheirPatterns) {
  using F = TypeParam;
  // Runs of one class (small), adjacent medium chunks with boundary tags, and small huge blocks.
  for (size_t n : {size_t{16}, size_t{24}, size_t{48}, size_t{100}, size_t{1024}, size_t{3000},
                   size_t{8192}, size_t{12000}, size_t{65536}, size_t{200000}, 1 * kMiB + 3}) {
    size_t count = n <= 8192 ? 2000 : n <= 200000 ? 200 : 8;
    count /= kWorkDivisor;
    std::vector<std::pair<void*, size_t>> v;
    for (size_t i = 0; i < count; ++i) {
      void* p = F::malloc(n);
      ASSERT_NE(p, nullptr);
      size_t u = F::usable(p);
      ASSERT_GE(u, n);
      fill_pattern(p, u);
      v.emplace_back(p, u);
    }
    // Free every third block and refill the holes with new blocks of the same size.
    for (size_t i = 0; i < v.size(); i += 3) {
      F::free(v[i].first);
      void* p = F::malloc(n);
      ASSERT_NE(p, nullptr);
      size_t u = F::usable(p);
      fill_pattern(p, u);
      v[i] = {p, u};
    }
    for (auto& [p, u] : v) ASSERT_TRUE(check_pattern(p, u)) << "size " << n;
    for (auto& [p, u] : v) F::free(p);
  }
}

TYPED_TEST(Api, LargeHugeSizesUpTo256MiB) {
  using F = TypeParam;
  for (size_t n : {100 * kMiB, 128 * kMiB, 256 * kMiB}) {
    auto* p = static_cast<unsigned char*>(F::malloc(n));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned(p, 16));
    EXPECT_GE(F::usable(p), n);
    p[0] = 1;
    p[n / 2] = 2;
    p[n - 1] = 3;
    EXPECT_EQ(p[0] + p[n / 2] + p[n - 1], 6);
    F::free(p);
  }
}

TYPED_TEST(Api, ImpossibleSizesAreEnomem) {
  using F = TypeParam;
  for (size_t n : {SIZE_MAX, SIZE_MAX - 4096, size_t{PTRDIFF_MAX} + 1, size_t{PTRDIFF_MAX},
                   size_t{1} << 62, size_t{1} << 47}) {
    errno = 0;
    EXPECT_EQ(F::malloc(opaque(n)), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
  }
  // And the allocator still works afterwards.
  void* p = F::malloc(100);
  ASSERT_NE(p, nullptr);
  F::free(p);
}

TYPED_TEST(Api, SuccessDoesNotTouchErrno) {
  using F = TypeParam;
  errno = 1234;
  void* p = F::malloc(100);
  void* q = F::malloc(100000);
  void* r = F::malloc(5 * kMiB);
  void* c = F::calloc(10, 10);
  void* z = F::malloc(0);
  q = F::realloc(q, 200000);
  r = F::realloc(r, 7 * kMiB);
  void* a = nullptr;
  EXPECT_EQ(F::posix_memalign(&a, 4096, 100), 0);
  void* b = F::aligned_alloc(256, 1000);
  void* v = F::valloc(100);
  EXPECT_GT(F::usable(p), 0u);
  EXPECT_EQ(F::usable(nullptr), 0u);
  for (void* x : {p, q, r, c, z, a, b, v}) {
    EXPECT_NE(x, nullptr);
    F::free(x);
  }
  F::free(nullptr);
  EXPECT_EQ(F::realloc(F::malloc(10), 0), nullptr);
  EXPECT_EQ(errno, 1234);
}

// ------------------------------------------------------------------------------ calloc

TYPED_TEST(Api, CallocIsZeroEvenOnReusedMemory) {
  using F = TypeParam;
  for (size_t n : {size_t{8}, size_t{100}, size_t{1000}, size_t{5000}, size_t{8192},
                   size_t{8193}, size_t{70000}, size_t{600000}, 3 * kMiB, 20 * kMiB}) {
    // Dirty some memory of this size, free it, then calloc the same size several times.
    std::vector<void*> dirty;
    for (int i = 0; i < 8; ++i) {
      void* p = F::malloc(n);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xAA, n);
      dirty.push_back(p);
    }
    for (void* p : dirty) F::free(p);
    for (int i = 0; i < 8; ++i) {
      auto* c = static_cast<unsigned char*>(F::calloc(1, n));
      ASSERT_NE(c, nullptr);
      for (size_t k = 0; k < n; k += (n > 65536 ? 509 : 1)) ASSERT_EQ(c[k], 0) << n << " @" << k;
      ASSERT_EQ(c[n - 1], 0);
      dirty[i] = c;
    }
    for (void* p : dirty) F::free(p);
  }
}

TYPED_TEST(Api, CallocIsZeroAfterShrinkingRealloc) {
  using F = TypeParam;
  // Blocks shrunk by realloc leave dirty tails behind (split medium chunks, mremap-shrunk huge
  // blocks); calloc of the original size must still see zeros everywhere.
  for (size_t big : {size_t{300000}, 9 * kMiB, 40 * kMiB}) {
    for (int round = 0; round < 3; ++round) {
      void* p = F::malloc(big);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0xAA, big);
      p = F::realloc(p, big / 3);
      ASSERT_NE(p, nullptr);
      F::free(p);
      auto* c = static_cast<unsigned char*>(F::calloc(big, 1));
      ASSERT_NE(c, nullptr);
      size_t u = F::usable(c);
      ASSERT_GE(u, big);
      for (size_t k = 0; k < big; k += 97) ASSERT_EQ(c[k], 0) << big << " @" << k;
      ASSERT_EQ(c[big - 1], 0);
      F::free(c);
    }
  }
}

TYPED_TEST(Api, CallocOverflowAndZeroSizes) {
  using F = TypeParam;
  errno = 0;
  EXPECT_EQ(F::calloc(opaque(size_t{1} << 40), opaque(size_t{1} << 40)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(F::calloc(opaque(SIZE_MAX / 2), 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(F::calloc(3, opaque(SIZE_MAX / 2)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(F::calloc(1, opaque(size_t{PTRDIFF_MAX} + 1)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // glibc: any zero count or size gives a unique, freeable pointer.
  void* z1 = F::calloc(0, 100);
  void* z2 = F::calloc(100, 0);
  void* z3 = F::calloc(0, 0);
  void* z4 = F::calloc(0, opaque(SIZE_MAX));
  for (void* z : {z1, z2, z3, z4}) EXPECT_NE(z, nullptr);
  EXPECT_NE(z1, z2);
  EXPECT_NE(z2, z3);
  for (void* z : {z1, z2, z3, z4}) F::free(z);
}

// ------------------------------------------------------------------------------ realloc

TYPED_TEST(Api, ReallocNullIsMallocAndZeroFrees) {
  using F = TypeParam;
  void* p = F::realloc(nullptr, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(F::usable(p), 100u);
  errno = 0;
  EXPECT_EQ(F::realloc(p, 0), nullptr);  // glibc: frees and returns NULL
  EXPECT_EQ(errno, 0);
  void* z = F::realloc(nullptr, 0);  // glibc: malloc(0)
  EXPECT_NE(z, nullptr);
  F::free(z);
  // Zero-size realloc of medium and huge blocks frees them too (the memory comes back).
  mpcalloc_stats_t before = stats_now();
  void* h = F::malloc(32 * kMiB);
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(stats_now().huge_count, before.huge_count + 1);
  EXPECT_EQ(F::realloc(h, 0), nullptr);
  EXPECT_EQ(stats_now().huge_count, before.huge_count);
  EXPECT_EQ(F::realloc(F::malloc(100000), 0), nullptr);
}

TYPED_TEST(Api, ReallocKeepsContentsAcrossEveryClassBoundary) {
  using F = TypeParam;
  const size_t steps[] = {8,        24,        100,        1000,     5000,     70000,  300000,
                          2 * kMiB, 9 * kMiB,  200 * kMiB, 9 * kMiB, 2 * kMiB, 300000, 70000,
                          5000,     1000,      100,        24,       8,        1,      70000,
                          24,       200 * kMiB, 100,       9 * kMiB, 8};
  // The pattern is keyed by a fixed value so it does not depend on where the block lives.
  const void* key = reinterpret_cast<void*>(0x1000);
  size_t n = 1;
  auto* p = static_cast<unsigned char*>(F::malloc(n));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, n, key);
  for (size_t next : steps) {
    auto* q = static_cast<unsigned char*>(F::realloc(p, next));
    ASSERT_NE(q, nullptr) << next;
    p = q;
    EXPECT_TRUE(aligned(p, 16));
    ASSERT_GE(F::usable(p), next);
    ASSERT_TRUE(check_prefix(p, next, n, key)) << n << " -> " << next;
    fill_block(p, next, key);
    n = next;
  }
  F::free(p);
}

TYPED_TEST(Api, ReallocInPlaceSizesKeepNeighbours) {
  using F = TypeParam;
  // Grow and shrink blocks that sit between live neighbours: a realloc that extends into a
  // neighbour, or leaves a tail that is handed out while still in use, breaks a pattern.
  for (size_t base : {size_t{40}, size_t{900}, size_t{20000}, size_t{150000}}) {
    std::vector<std::pair<unsigned char*, size_t>> v;
    for (int i = 0; i < 60; ++i) {
      auto* p = static_cast<unsigned char*>(F::malloc(base));
      ASSERT_NE(p, nullptr);
      fill_pattern(p, base);
      v.emplace_back(p, base);
    }
    Rng r = Rng::seeded(base);
    for (int round = 0; round < 200; ++round) {
      size_t i = r.below(v.size());
      auto [p, n] = v[i];
      ASSERT_TRUE(check_pattern(p, n)) << base << " round " << round;
      size_t next = 1 + r.below(base * 3);
      auto* q = static_cast<unsigned char*>(F::realloc(p, next));
      ASSERT_NE(q, nullptr);
      size_t keep = n < next ? n : next;
      ASSERT_TRUE(check_pattern(q, keep, p)) << base << " " << n << " -> " << next;
      fill_pattern(q, next);
      v[i] = {q, next};
    }
    for (auto& [p, n] : v) {
      ASSERT_TRUE(check_pattern(p, n)) << base;
      F::free(p);
    }
  }
}

TYPED_TEST(Api, ClassBoundarySizesRoundTrip) {
  using F = TypeParam;
  // Sizes on each side of every internal boundary: the inline fast path (1 KiB), small
  // classes (8 KiB), medium chunks (1 MiB) and the segment (4 MiB).
  std::vector<size_t> sizes;
  for (size_t b : {size_t{1024}, size_t{8192}, size_t{1} << 20, size_t{4} << 20}) {
    for (size_t d : {size_t{0}, size_t{1}, size_t{16}, size_t{17}, size_t{4096}}) {
      if (d < b) sizes.push_back(b - d);
      sizes.push_back(b + d);
    }
  }
  const void* key = reinterpret_cast<void*>(0x2000);
  for (size_t from : sizes) {
    for (size_t to : sizes) {
      if ((from ^ to) % 7 != 0 && from != to) continue;  // a spread of pairs, not all 1600
      auto* neighbour = static_cast<unsigned char*>(F::malloc(from));
      auto* p = static_cast<unsigned char*>(F::malloc(from));
      ASSERT_NE(p, nullptr) << from << " (then " << to << ") errno " << errno;
      ASSERT_NE(neighbour, nullptr) << from;
      size_t un = F::usable(neighbour);
      fill_block(neighbour, un, neighbour);
      size_t up = F::usable(p);
      ASSERT_GE(up, from);
      fill_block(p, up, key);
      auto* q = static_cast<unsigned char*>(F::realloc(p, to));
      ASSERT_NE(q, nullptr) << from << " -> " << to;
      ASSERT_GE(F::usable(q), to);
      ASSERT_TRUE(check_prefix(q, from < to ? from : to, up, key)) << from << " -> " << to;
      fill_block(q, F::usable(q), q);
      ASSERT_TRUE(check_block(neighbour, un, neighbour)) << from << " -> " << to;
      F::free(q);
      F::free(neighbour);
    }
    // calloc at this size after dirtying it.
    void* d = F::malloc(from);
    ASSERT_NE(d, nullptr);
    std::memset(d, 0xAA, from);
    F::free(d);
    auto* c = static_cast<unsigned char*>(F::calloc(from, 1));
    ASSERT_NE(c, nullptr);
    for (size_t k = 0; k < from; k += 7) ASSERT_EQ(c[k], 0) << from << " @" << k;
    ASSERT_EQ(c[from - 1], 0);
    F::free(c);
  }
}

TYPED_TEST(Api, ReallocGrowsToOneGiBKeepingEnds) {
  using F = TypeParam;
  mpcalloc_stats_t before = stats_now();
  // Each step writes its last byte; every step checks the first byte and all earlier last
  // bytes, growing to 1 GiB and back down.
  size_t n = 4096;
  auto* p = static_cast<unsigned char*>(F::malloc(n));
  ASSERT_NE(p, nullptr);
  p[0] = 0x5a;
  p[n - 1] = static_cast<unsigned char>(n - 1);
  std::vector<size_t> lasts{n - 1};
  while (n < kGiB) {
    n = n * 3 / 2 + 4096;
    if (n > kGiB) n = kGiB;
    auto* q = static_cast<unsigned char*>(F::realloc(p, n));
    ASSERT_NE(q, nullptr) << n;
    p = q;
    ASSERT_EQ(p[0], 0x5a) << n;
    for (size_t last : lasts) ASSERT_EQ(p[last], static_cast<unsigned char>(last)) << n << " @" << last;
    p[n - 1] = static_cast<unsigned char>(n - 1);
    lasts.push_back(n - 1);
  }
  while (n > 4096) {
    n /= 3;
    auto* q = static_cast<unsigned char*>(F::realloc(p, n));
    ASSERT_NE(q, nullptr) << n;
    p = q;
    ASSERT_EQ(p[0], 0x5a) << n;
    for (size_t last : lasts) {
      if (last < n) {
        ASSERT_EQ(p[last], static_cast<unsigned char>(last)) << n << " @" << last;
      }
    }
  }
  F::free(p);
  // Big blocks grow in place or move with mremap, not by copying (design promise 5).
  EXPECT_GT(stats_now().mremap_calls, before.mremap_calls);
}

// A buffer grown by appends, as a string builder does, through every kind (small, medium,
// huge) and shrunk back by steps: after each realloc the block holds at least the size asked
// for (usable size), and every byte written before is still there. Most of these resizes are
// decided inline from the block's header (heap::reallocate); a wrong "fits as it is" would
// leave a block smaller than asked.
TYPED_TEST(Api, ReallocByAppendsKeepsEveryByteAndEnoughRoom) {
  using F = TypeParam;
  static const char key = 0;  // the pattern follows the buffer, not its address
  unsigned char* p = nullptr;
  size_t n = 0;
  while (n < 3 * kMiB) {
    size_t m = n + 1 + n / 64;
    auto* q = static_cast<unsigned char*>(F::realloc(p, m));
    ASSERT_NE(q, nullptr) << m;
    ASSERT_GE(F::usable(q), m) << "realloc to " << m;
    if (n > 0) {
      ASSERT_EQ(q[n - 1], pattern_byte(&key, n - 1)) << "lost at " << n << " -> " << m;
    }
    for (size_t i = n; i < m; ++i) q[i] = pattern_byte(&key, i);
    p = q;
    n = m;
  }
  ASSERT_TRUE(check_pattern(p, n, &key));
  while (n > 1) {
    size_t m = n - 1 - n / 64;
    auto* q = static_cast<unsigned char*>(F::realloc(p, m));
    ASSERT_NE(q, nullptr) << m;
    ASSERT_GE(F::usable(q), m) << "realloc to " << m;
    ASSERT_EQ(q[m - 1], pattern_byte(&key, m - 1)) << "lost at " << n << " -> " << m;
    ASSERT_EQ(q[0], pattern_byte(&key, 0));
    p = q;
    n = m;
  }
  ASSERT_TRUE(check_pattern(p, n, &key));
  F::free(p);
}

TYPED_TEST(Api, ReallocFailureKeepsTheBlock) {
  using F = TypeParam;
  for (size_t n : {size_t{40}, size_t{50000}, 5 * kMiB}) {
    auto* p = static_cast<unsigned char*>(F::malloc(n));
    ASSERT_NE(p, nullptr);
    fill_pattern(p, n);
    for (size_t bad : {SIZE_MAX, size_t{PTRDIFF_MAX} + 1, size_t{1} << 47}) {
      errno = 0;
      EXPECT_EQ(F::realloc(p, opaque(bad)), nullptr) << bad;
      EXPECT_EQ(errno, ENOMEM);
      ASSERT_TRUE(check_pattern(p, n)) << n << " after realloc to " << bad;
      ASSERT_GE(F::usable(p), n);
    }
    // The block is still a live block: it can grow and be freed.
    auto* q = static_cast<unsigned char*>(F::realloc(p, n * 2));
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(check_pattern(q, n, p));
    F::free(q);
  }
}

TYPED_TEST(Api, ReallocOfAlignedBlocksKeepsContents) {
  using F = TypeParam;
  for (size_t a : {size_t{64}, size_t{4096}, size_t{1} << 21}) {
    for (size_t n : {size_t{100}, size_t{10000}, 3 * kMiB}) {
      void* p = F::aligned_alloc(a, n);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(aligned(p, a));
      fill_block(p, n, p);
      void* q = F::realloc(p, n * 2 + 1);
      ASSERT_NE(q, nullptr);
      EXPECT_TRUE(check_block(q, n, p)) << a << " " << n;
      void* r = F::realloc(q, n / 2 + 1);
      ASSERT_NE(r, nullptr);
      EXPECT_TRUE(check_prefix(r, n / 2 + 1, n, p)) << a << " " << n;
      F::free(r);
    }
  }
}

TYPED_TEST(Api, ReallocarrayOverflowAndZero) {
  using F = TypeParam;
  auto* p = static_cast<unsigned char*>(F::malloc(64));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 64);
  errno = 0;
  EXPECT_EQ(F::reallocarray(p, opaque(SIZE_MAX / 2), 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(check_pattern(p, 64));
  errno = 0;
  EXPECT_EQ(F::reallocarray(p, opaque(size_t{1} << 32), opaque(size_t{1} << 32)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(check_pattern(p, 64));
  void* q = F::reallocarray(p, 100, 8);
  ASSERT_NE(q, nullptr);
  EXPECT_GE(F::usable(q), 800u);
  EXPECT_TRUE(check_pattern(q, 64, p));
  // glibc: a zero product on a live block is realloc(p, 0): frees and returns NULL.
  EXPECT_EQ(F::reallocarray(q, 5, 0), nullptr);
  // On NULL it is malloc (or calloc-free malloc of 0) and overflow on NULL is still ENOMEM.
  void* m = F::reallocarray(nullptr, 0, 5);
  EXPECT_NE(m, nullptr);
  F::free(m);
  m = F::reallocarray(nullptr, 10, 10);
  ASSERT_NE(m, nullptr);
  EXPECT_GE(F::usable(m), 100u);
  F::free(m);
  errno = 0;
  EXPECT_EQ(F::reallocarray(nullptr, opaque(SIZE_MAX / 2), 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// ------------------------------------------------------------------------------ aligned

TYPED_TEST(Api, PosixMemalignRules) {
  using F = TypeParam;
  void* out = reinterpret_cast<void*>(0x1);
  for (size_t bad : {size_t{0}, size_t{1}, size_t{2}, size_t{4}, size_t{3}, size_t{24},
                     size_t{48}, size_t{4095}, size_t{4097}, SIZE_MAX, SIZE_MAX / 2}) {
    errno = 77;
    EXPECT_EQ(F::posix_memalign(&out, opaque(bad), 64), EINVAL) << bad;
    EXPECT_EQ(errno, 77) << "EINVAL leaves errno alone, alignment " << bad;
    EXPECT_EQ(out, reinterpret_cast<void*>(0x1)) << "out untouched on error";
  }
  for (size_t a = sizeof(void*); a <= kGiB; a *= 2) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, size_t{100000}, 3 * kMiB}) {
      // Keep the biggest alignments cheap: a few sizes only.
      if (a >= (size_t{1} << 26) && n != 0 && n != 100 && n != 3 * kMiB) continue;
      void* p = nullptr;
      errno = 55;
      ASSERT_EQ(F::posix_memalign(&p, a, n), 0) << a << " " << n;
      EXPECT_EQ(errno, 55);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      EXPECT_GE(F::usable(p), n);
      if (n > 0) fill_block(p, n, p);
      // A second block of the same kind must not overlap the first.
      void* p2 = nullptr;
      ASSERT_EQ(F::posix_memalign(&p2, a, n), 0) << a << " " << n;
      EXPECT_NE(p2, p);
      EXPECT_TRUE(aligned(p2, a));
      if (n > 0) {
        fill_block(p2, n, p2);
        EXPECT_TRUE(check_block(p, n, p)) << a << " " << n;
      }
      F::free(p);
      F::free(p2);
    }
  }
  // ENOMEM: returned, out untouched, and (like glibc 2.36) errno set to ENOMEM too.
  for (auto [a, n] : {std::pair{size_t{64}, SIZE_MAX - 100}, std::pair{size_t{4096}, size_t{1} << 62},
                      std::pair{size_t{1} << 62, size_t{10}}, std::pair{size_t{64}, size_t{1} << 47}}) {
    void* p = reinterpret_cast<void*>(0x1);
    errno = 0;
    EXPECT_EQ(F::posix_memalign(&p, opaque(a), opaque(n)), ENOMEM) << a << " " << n;
    EXPECT_EQ(p, reinterpret_cast<void*>(0x1));
    EXPECT_EQ(errno, ENOMEM) << a << " " << n;
  }
}

TYPED_TEST(Api, AlignedAllocAndMemalignMatchGlibc) {
  using F = TypeParam;
  // glibc 2.36: memalign and aligned_alloc round a non-power-of-two alignment up to the next
  // power of two, and an alignment of 0 or below 16 is plain malloc.
  for (size_t a : {size_t{24}, size_t{48}, size_t{100}, size_t{3000}, size_t{5000}}) {
    size_t want = 1;
    while (want < a) want *= 2;
    void* p = F::memalign(opaque(a), 100);
    ASSERT_NE(p, nullptr) << a;
    EXPECT_TRUE(aligned(p, want)) << a;
    F::free(p);
    p = F::aligned_alloc(opaque(a), 100);
    ASSERT_NE(p, nullptr) << a;
    EXPECT_TRUE(aligned(p, want)) << a;
    F::free(p);
  }
  for (size_t a : {size_t{0}, size_t{1}, size_t{3}, size_t{8}}) {
    void* p = F::memalign(opaque(a), 100);
    ASSERT_NE(p, nullptr) << a;
    EXPECT_TRUE(aligned(p, 16));
    F::free(p);
    p = F::aligned_alloc(opaque(a), 100);
    ASSERT_NE(p, nullptr) << a;
    EXPECT_TRUE(aligned(p, 16));
    F::free(p);
  }
  // Zero size: a unique, freeable, aligned pointer.
  void* z = F::aligned_alloc(64, 0);
  ASSERT_NE(z, nullptr);
  EXPECT_TRUE(aligned(z, 64));
  F::free(z);
  // An alignment above SIZE_MAX/2+1 is EINVAL; SIZE_MAX/2+1 itself is a valid power of two
  // that cannot be honoured: ENOMEM.
  errno = 0;
  EXPECT_EQ(F::memalign(opaque(SIZE_MAX / 2 + 2), 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(F::aligned_alloc(opaque(SIZE_MAX), 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(F::memalign(opaque(SIZE_MAX / 2 + 1), 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  for (size_t a = 1; a <= (size_t{1} << 24); a *= 4) {
    for (size_t n : {size_t{1}, size_t{3000}, size_t{40000}, 2 * kMiB}) {
      void* q = F::aligned_alloc(a, n);
      ASSERT_NE(q, nullptr);
      EXPECT_TRUE(aligned(q, a < 16 ? 16 : a)) << a << " " << n;
      EXPECT_GE(F::usable(q), n);
      std::memset(q, 1, n);
      F::free(q);
    }
  }
  errno = 0;
  EXPECT_EQ(F::aligned_alloc(64, opaque(SIZE_MAX - 10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(F::memalign(4096, opaque(size_t{PTRDIFF_MAX})), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TYPED_TEST(Api, AlignedNeighboursKeepTheirPatterns) {
  using F = TypeParam;
  // Aligned blocks of mixed alignments and sizes, all live at once and written to their whole
  // usable size: the padding in front of an aligned block must not belong to anyone else.
  Rng r = Rng::seeded(7);
  std::vector<std::pair<void*, size_t>> v;
  for (int i = 0; i < 3000 / kWorkDivisor; ++i) {
    size_t a = size_t{16} << r.below(9);  // 16 .. 4096
    size_t n = (i % 50 == 0) ? 64 * kKiB + r.below(300 * kKiB) : 1 + r.below(6000);
    void* p = F::memalign(a, n);
    ASSERT_NE(p, nullptr);
    ASSERT_TRUE(aligned(p, a)) << a;
    size_t u = F::usable(p);
    ASSERT_GE(u, n);
    fill_block(p, u, p);
    v.emplace_back(p, u);
    if (i % 7 == 3) {  // free some as we go so holes get reused
      size_t k = r.below(v.size());
      ASSERT_TRUE(check_block(v[k].first, v[k].second, v[k].first));
      F::free(v[k].first);
      v[k] = v.back();
      v.pop_back();
    }
  }
  for (auto& [p, u] : v) ASSERT_TRUE(check_block(p, u, p)) << u;
  for (auto& [p, u] : v) F::free(p);
}

TYPED_TEST(Api, ThousandsOfOveralignedBlocksAtOnce) {
  using F = TypeParam;
  // Alignments of a segment (4 MiB) and more take a separate path; glibc serves any number of
  // them while memory lasts. 5000 small ones are 20 MB of memory.
  std::vector<void*> v;
  int failed_at = -1;
  int failed_errno = 0;
  for (int i = 0; i < 5000; ++i) {
    size_t a = (i % 3 == 2) ? 8 * kMiB : 4 * kMiB;
    errno = 0;
    void* p = F::aligned_alloc(a, 64);
    if (p == nullptr) {
      failed_at = i;
      failed_errno = errno;
      break;
    }
    EXPECT_TRUE(aligned(p, a));
    EXPECT_GE(F::usable(p), 64u);
    std::memset(p, i & 0xff, 64);
    v.push_back(p);
  }
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(*static_cast<unsigned char*>(v[i]), i & 0xff);
    F::free(v[i]);  // freed even after a failure, so later tests start clean
  }
  EXPECT_EQ(failed_at, -1) << "aligned_alloc failed at block #" << failed_at << " with errno "
                           << failed_errno;
}

TYPED_TEST(Api, VallocAndPvalloc) {
  using F = TypeParam;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t n : {size_t{0}, size_t{1}, size_t{10}, size_t{4096}, size_t{5000}, size_t{100000}, 3 * kMiB}) {
    void* p = F::valloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(aligned(p, page)) << n;
    EXPECT_GE(F::usable(p), n);
    if (n > 0) std::memset(p, 0x5c, n);
    F::free(p);
    p = F::pvalloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(aligned(p, page)) << n;
    // pvalloc rounds the size up to whole pages (glibc: pvalloc(0) is a page-aligned malloc(0)).
    size_t rounded = (n + page - 1) / page * page;
    EXPECT_GE(F::usable(p), rounded) << n;
    std::memset(p, 0x5c, rounded);
    F::free(p);
  }
  errno = 0;
  EXPECT_EQ(F::pvalloc(opaque(SIZE_MAX - 10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(F::valloc(opaque(SIZE_MAX - 10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

// ------------------------------------------------------------------------------ extras

TYPED_TEST(Api, UsableSizeOfNullAndTrim) {
  using F = TypeParam;
  EXPECT_EQ(F::usable(nullptr), 0u);
  std::vector<void*> v;
  for (int i = 0; i < 2000; ++i) v.push_back(F::malloc(static_cast<size_t>(i) * 37 + 1));
  v.push_back(F::malloc(30 * kMiB));
  for (void* p : v) F::free(p);
  // glibc's rule: 1 when memory went back to the system, else 0. The first trim releases the
  // freed runs, segments and the huge block; nothing is left for the next ones.
  EXPECT_EQ(F::trim(0), 1);
  EXPECT_EQ(F::trim(size_t{1} << 20), 0);
  EXPECT_EQ(F::trim(SIZE_MAX), 0);
  // Still works after trim, for every kind of block.
  for (size_t n : {size_t{100}, size_t{50000}, 30 * kMiB}) {
    void* p = F::malloc(n);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, n);
    F::free(p);
  }
}

namespace {
// The value the free fast path compares a run's owner key with.
uintptr_t thread_pointer() { return reinterpret_cast<uintptr_t>(mpcalloc::arch::thread_key()); }
}  // namespace

TYPED_TEST(Api, SplitHugeBlocksIgnoreOldDataWhereTheRunTableWas) {
  using F = TypeParam;
  // A cached huge block split for smaller requests: each tail starts where the old block had
  // user data. The free fast path reads a run owner key at the block's base and compares it
  // with the thread pointer; old data equal to it made the free vanish (issue 9: the block
  // leaked and the "run table" was written).
  F::trim(0);
  const size_t words = 32 * kMiB / sizeof(uintptr_t);
  auto* big = static_cast<uintptr_t*>(F::malloc(words * sizeof(uintptr_t)));
  ASSERT_NE(big, nullptr);
  for (size_t i = 0; i < words; ++i) big[i] = thread_pointer();
  F::free(big);
  mpcalloc_stats_t before = stats_now();
  void* parts[6];
  for (void*& p : parts) {
    p = F::malloc(3 * kMiB);
    ASSERT_NE(p, nullptr);
  }
  EXPECT_EQ(stats_now().mapped_bytes, before.mapped_bytes) << "the parts come from the cached block";
  for (void* p : parts) F::free(p);
  EXPECT_EQ(stats_now().huge_count, before.huge_count) << "every huge free took effect";
  EXPECT_EQ(stats_now().cached_bytes, before.cached_bytes) << "the pieces merged back";
  F::trim(0);
}

TYPED_TEST(Api, OptionSetChangesTheCacheBudgetAtRunTime) {
  using F = TypeParam;
  const long long budget = mpcalloc_option_get("cache_max");
  ASSERT_GT(budget, 0);
  ASSERT_EQ(mpcalloc_option_set("cache_max", "0"), 0);
  EXPECT_EQ(mpcalloc_option_get("cache_max"), 0);
  F::trim(0);
  mpcalloc_stats_t before = stats_now();
  void* p = F::malloc(8 * kMiB);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, 8 * kMiB);
  F::free(p);
  EXPECT_EQ(stats_now().cached_bytes, 0u) << "budget 0: freed blocks go back at once";
  EXPECT_EQ(stats_now().mapped_bytes, before.mapped_bytes);
  // Errors keep the old value and say why.
  errno = 0;
  EXPECT_EQ(mpcalloc_option_set("cache_max", "lots"), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mpcalloc_option_get("cache_max"), 0);
  errno = 0;
  EXPECT_EQ(mpcalloc_option_set("cache_maximum", "1M"), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(mpcalloc_option_set("check", "1"), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(mpcalloc_option_set(nullptr, "1"), -1);
  ASSERT_EQ(mpcalloc_option_set("MPCALLOC_CACHE_MAX", std::to_string(budget).c_str()), 0);
  EXPECT_EQ(mpcalloc_option_get("cache_max"), budget);
  void* q = F::malloc(8 * kMiB);
  F::free(q);
  EXPECT_GE(stats_now().cached_bytes, 8 * kMiB) << "cached again";
  F::trim(0);
}

TYPED_TEST(Api, NumaCallsOnAMachineWithoutNuma) {
  using F = TypeParam;
  // The NUMA tests (tests/numa) run in a multi-node VM; here the same calls must behave on
  // whatever this machine is: node 0 always exists, a node past the last does not.
  int nodes = mpcalloc_numa_nodes();
  ASSERT_GE(nodes, 1);
  if (nodes == 1) {
    EXPECT_EQ(mpcalloc_thread_rebind(), -1) << "no NUMA: no thread is bound";
  }
  void* small = F::malloc(200);
  void* medium = F::malloc(300000);
  void* huge = F::malloc(6 * kMiB);
  ASSERT_TRUE(small && medium && huge);
  std::memset(small, 1, 200);
  std::memset(medium, 2, 300000);
  std::memset(huge, 3, 6 * kMiB);
  // qemu-user (the aarch64 tests) implements no move_pages: there a migration must fail with
  // EIO, and keep the contents, instead of succeeding.
  errno = 0;
  const bool can_move = syscall(SYS_move_pages, 0, 0, nullptr, nullptr, nullptr, 0) == 0 || errno != ENOSYS;
  for (void* p : {small, medium, huge}) {
    errno = 0;
    int r = mpcalloc_migrate(p, 0);
    if (can_move) {
      EXPECT_EQ(r, 0);
    } else {
      EXPECT_EQ(r, -1);
      EXPECT_EQ(errno, EIO);
    }
  }
  EXPECT_EQ(static_cast<unsigned char*>(huge)[6 * kMiB - 1], 3) << "contents kept";
  errno = 0;
  EXPECT_EQ(mpcalloc_migrate(huge, 64), -1);
  EXPECT_EQ(errno, EINVAL);
  int on_stack = 0;
  errno = 0;
  EXPECT_EQ(mpcalloc_migrate(&on_stack, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(mpcalloc_migrate(nullptr, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  F::free(small);
  F::free(medium);
  F::free(huge);
}

TYPED_TEST(Api, TrimGivesCachedMemoryBack) {
  using F = TypeParam;
  void* big = F::malloc(64 * kMiB);
  ASSERT_NE(big, nullptr);
  std::memset(big, 1, 64 * kMiB);
  F::free(big);  // cached for reuse
  mpcalloc_stats_t before = stats_now();
  EXPECT_GT(before.cached_bytes, 0u);
  EXPECT_EQ(F::trim(0), 1) << "memory was given back, so malloc_trim reports 1";
  mpcalloc_stats_t after = stats_now();
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_LT(after.mapped_bytes, before.mapped_bytes);
}

#if !MPCALLOC_TEST_FACE_OVERRIDE
TEST(PrefixedOnly, FreeSizedForms) {
  mpcalloc_stats_t s0 = stats_now();
  void* p = mpcalloc_malloc(100);
  ASSERT_NE(p, nullptr);
  mpcalloc_free_sized(p, 100);
  void* h = mpcalloc_malloc(opaque(24 * kMiB));
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(stats_now().huge_count, s0.huge_count + 1);
  mpcalloc_free_sized(h, 24 * kMiB);
  EXPECT_EQ(stats_now().huge_count, s0.huge_count) << "free_sized released the huge block";
  void* q = mpcalloc_aligned_alloc(256, 1000);
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(aligned(q, 256));
  mpcalloc_free_aligned_sized(q, 256, 1000);
  void* ha = mpcalloc_aligned_alloc(size_t{1} << 21, 24 * kMiB);
  ASSERT_NE(ha, nullptr);
  ASSERT_TRUE(aligned(ha, size_t{1} << 21));
  EXPECT_EQ(stats_now().huge_count, s0.huge_count + 1);
  mpcalloc_free_aligned_sized(ha, size_t{1} << 21, 24 * kMiB);
  EXPECT_EQ(stats_now().huge_count, s0.huge_count);
  mpcalloc_free_sized(nullptr, 0);
  mpcalloc_free_aligned_sized(nullptr, 64, 0);
  // Memory given back by the sized forms is reusable: a churn (~50 MB in all) does not grow
  // the mapping.
  const size_t mapped = stats_now().mapped_bytes;
  for (int i = 0; i < 5000; ++i) {
    size_t n = 16 + static_cast<size_t>(i % 500) * 40;
    void* x = mpcalloc_malloc(n);
    ASSERT_NE(x, nullptr);
    mpcalloc_free_sized(x, n);
  }
  EXPECT_LE(stats_now().mapped_bytes, mapped + 16 * kMiB);
}
#endif
