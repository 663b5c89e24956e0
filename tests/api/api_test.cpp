// glibc/POSIX semantics of the malloc family, checked through every face this binary has.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "faces.h"

template <typename F>
class Api : public ::testing::Test {};

#if MPCALLOC_TEST_FACE_OVERRIDE
using Faces = ::testing::Types<PrefixedFace, OverrideFace>;
#else
using Faces = ::testing::Types<PrefixedFace>;
#endif
TYPED_TEST_SUITE(Api, Faces);

namespace {
bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }
constexpr size_t kMiB = size_t{1} << 20;
}  // namespace

TYPED_TEST(Api, MallocZeroGivesUniqueFreeablePointers) {
  using F = TypeParam;
  void* a = F::malloc(0);
  void* b = F::malloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  F::free(a);
  F::free(b);
  F::free(nullptr);  // no-op
}

TYPED_TEST(Api, EverySizeAlignedUsableAndWritable) {
  using F = TypeParam;
  std::vector<std::pair<void*, size_t>> blocks;
  auto check_one = [&](size_t n) {
    void* p = F::malloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_TRUE(aligned(p, 16)) << n;
    size_t u = F::usable(p);
    EXPECT_GE(u, n) << n;
    fill_pattern(p, u);  // the whole usable size is ours to write
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
    ASSERT_TRUE(check_pattern(p, u)) << "block of usable size " << u << " was overwritten";
  }
  for (auto& [p, u] : blocks) F::free(p);
}

TYPED_TEST(Api, LargeHugeSizesUpTo256MiB) {
  using F = TypeParam;
  for (size_t n : {100 * kMiB, 256 * kMiB}) {
    auto* p = static_cast<unsigned char*>(F::malloc(n));
    ASSERT_NE(p, nullptr);
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
  for (size_t n : {SIZE_MAX, SIZE_MAX - 4096, size_t{PTRDIFF_MAX} + 1, size_t{1} << 62}) {
    errno = 0;
    EXPECT_EQ(F::malloc(opaque(n)), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
  }
}

TYPED_TEST(Api, SuccessDoesNotTouchErrno) {
  using F = TypeParam;
  errno = 1234;
  void* p = F::malloc(100);
  void* q = F::malloc(100000);
  void* r = F::malloc(5 * kMiB);
  F::free(p);
  F::free(q);
  F::free(r);
  EXPECT_EQ(errno, 1234);
}

TYPED_TEST(Api, CallocIsZeroEvenOnReusedMemory) {
  using F = TypeParam;
  for (size_t n : {size_t{8}, size_t{100}, size_t{1000}, size_t{5000}, size_t{70000},
                   size_t{600000}, 3 * kMiB, 20 * kMiB}) {
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

TYPED_TEST(Api, CallocOverflowIsEnomem) {
  using F = TypeParam;
  errno = 0;
  EXPECT_EQ(F::calloc(opaque(size_t{1} << 40), opaque(size_t{1} << 40)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(F::calloc(opaque(SIZE_MAX / 2), 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* z = F::calloc(0, 100);
  EXPECT_NE(z, nullptr);
  F::free(z);
}

TYPED_TEST(Api, ReallocNullIsMallocAndZeroFrees) {
  using F = TypeParam;
  void* p = F::realloc(nullptr, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(F::usable(p), 100u);
  errno = 0;
  EXPECT_EQ(F::realloc(p, 0), nullptr);  // glibc: frees and returns NULL
  EXPECT_EQ(errno, 0);
}

TYPED_TEST(Api, ReallocKeepsContentsAcrossEveryClassBoundary) {
  using F = TypeParam;
  const size_t steps[] = {8,          24,        100,       1000,       5000,       70000,
                          300000,     2 * kMiB,  9 * kMiB,  200 * kMiB, 9 * kMiB,   2 * kMiB,
                          300000,     70000,     5000,      1000,       100,        24,
                          8};
  size_t n = 1;
  auto* p = static_cast<unsigned char*>(F::malloc(n));
  ASSERT_NE(p, nullptr);
  const void* key = reinterpret_cast<void*>(0x1000);
  fill_pattern(p, n);
  // Fill through a fixed key so the pattern does not depend on where the block lives.
  auto fill = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) p[i] = pattern_byte(key, i);
  };
  fill(0, n);
  for (size_t next : steps) {
    auto* q = static_cast<unsigned char*>(F::realloc(p, next));
    ASSERT_NE(q, nullptr) << next;
    p = q;
    size_t keep = n < next ? n : next;
    ASSERT_TRUE(check_pattern(p, keep, key)) << n << " -> " << next;
    fill(keep, next);
    n = next;
  }
  F::free(p);
}

TYPED_TEST(Api, ReallocGrowsToOneGiBKeepingEnds) {
  using F = TypeParam;
  size_t n = 4096;
  auto* p = static_cast<unsigned char*>(F::malloc(n));
  ASSERT_NE(p, nullptr);
  p[0] = 0x5a;
  p[n - 1] = 0x11;
  size_t prev_last = n - 1;
  while (n < (size_t{1} << 30)) {
    n = n * 3 / 2 + 4096;
    if (n > (size_t{1} << 30)) n = size_t{1} << 30;
    auto* q = static_cast<unsigned char*>(F::realloc(p, n));
    ASSERT_NE(q, nullptr) << n;
    p = q;
    ASSERT_EQ(p[0], 0x5a);
    ASSERT_EQ(p[prev_last], 0x11);
    p[n - 1] = 0x11;
    prev_last = n - 1;
  }
  F::free(p);
}

TYPED_TEST(Api, ReallocFailureKeepsTheBlock) {
  using F = TypeParam;
  for (size_t n : {size_t{40}, size_t{50000}, 5 * kMiB}) {
    auto* p = static_cast<unsigned char*>(F::malloc(n));
    ASSERT_NE(p, nullptr);
    fill_pattern(p, n);
    errno = 0;
    EXPECT_EQ(F::realloc(p, opaque(SIZE_MAX)), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(F::realloc(p, opaque(size_t{PTRDIFF_MAX} + 1)), nullptr);
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_TRUE(check_pattern(p, n));
    F::free(p);
  }
}

TYPED_TEST(Api, ReallocarrayOverflow) {
  using F = TypeParam;
  auto* p = static_cast<unsigned char*>(F::malloc(64));
  ASSERT_NE(p, nullptr);
  fill_pattern(p, 64);
  errno = 0;
  EXPECT_EQ(F::reallocarray(p, opaque(SIZE_MAX / 2), 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(check_pattern(p, 64));
  void* q = F::reallocarray(p, 100, 8);
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(check_pattern(q, 64, p));
  F::free(q);
}

TYPED_TEST(Api, PosixMemalignRules) {
  using F = TypeParam;
  void* out = reinterpret_cast<void*>(0x1);
  for (size_t bad : {size_t{0}, size_t{1}, size_t{2}, size_t{4}, size_t{3}, size_t{24},
                     size_t{48}, size_t{4095}}) {
    errno = 77;
    EXPECT_EQ(F::posix_memalign(&out, bad, 64), EINVAL) << bad;
    EXPECT_EQ(errno, 77) << "EINVAL leaves errno alone";
    EXPECT_EQ(out, reinterpret_cast<void*>(0x1)) << "out untouched on error";
  }
  for (size_t a = sizeof(void*); a <= (size_t{1} << 30); a *= 2) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{5000}, size_t{100000}, 3 * kMiB}) {
      if (a >= (size_t{1} << 26) && n > 100) continue;  // keep the biggest alignments cheap
      void* p = nullptr;
      ASSERT_EQ(F::posix_memalign(&p, a, n), 0) << a << " " << n;
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      EXPECT_GE(F::usable(p), n);
      if (n > 0) {
        std::memset(p, 0x3c, n);
      }
      F::free(p);
    }
  }
  void* p = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(F::posix_memalign(&p, 64, opaque(SIZE_MAX - 100)), ENOMEM);
  EXPECT_EQ(p, reinterpret_cast<void*>(0x1));
}

TYPED_TEST(Api, AlignedAllocAndMemalignMatchGlibc) {
  using F = TypeParam;
  // glibc 2.36: a non-power-of-two alignment is rounded up to the next power of two.
  void* p = F::memalign(24, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned(p, 32));
  F::free(p);
  p = F::aligned_alloc(48, 100);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned(p, 64));
  F::free(p);
  // An alignment above SIZE_MAX/2+1 cannot be honoured: EINVAL.
  errno = 0;
  EXPECT_EQ(F::memalign(opaque(SIZE_MAX / 2 + 2), 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
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
}

TYPED_TEST(Api, VallocAndPvalloc) {
  using F = TypeParam;
  void* p = F::valloc(10);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned(p, 4096));
  F::free(p);
  p = F::pvalloc(5000);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned(p, 4096));
  EXPECT_GE(F::usable(p), 8192u);  // rounded up to whole pages
  F::free(p);
  p = F::pvalloc(0);
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(aligned(p, 4096));
  F::free(p);
  errno = 0;
  EXPECT_EQ(F::pvalloc(opaque(SIZE_MAX - 10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TYPED_TEST(Api, UsableSizeOfNullAndTrim) {
  using F = TypeParam;
  EXPECT_EQ(F::usable(nullptr), 0u);
  std::vector<void*> v;
  for (int i = 0; i < 2000; ++i) v.push_back(F::malloc(static_cast<size_t>(i) * 37 + 1));
  v.push_back(F::malloc(30 * kMiB));
  for (void* p : v) F::free(p);
  int r = F::trim(0);
  EXPECT_TRUE(r == 0 || r == 1);
  void* p = F::malloc(100);  // still works after trim
  ASSERT_NE(p, nullptr);
  F::free(p);
}

TYPED_TEST(Api, TrimGivesCachedMemoryBack) {
  using F = TypeParam;
  mpcalloc_stats_t before, after;
  void* big = F::malloc(64 * kMiB);
  ASSERT_NE(big, nullptr);
  std::memset(big, 1, 64 * kMiB);
  F::free(big);  // cached for reuse
  mpcalloc_stats_get(&before);
  EXPECT_GT(before.cached_bytes, 0u);
  F::trim(0);
  mpcalloc_stats_get(&after);
  EXPECT_EQ(after.cached_bytes, 0u);
  EXPECT_LT(after.mapped_bytes, before.mapped_bytes);
}

TYPED_TEST(Api, FreeSizedForms) {
  void* p = mpcalloc_malloc(100);
  mpcalloc_free_sized(p, 100);
  void* q = mpcalloc_aligned_alloc(256, 1000);
  ASSERT_TRUE(aligned(q, 256));
  mpcalloc_free_aligned_sized(q, 256, 1000);
  mpcalloc_free_sized(nullptr, 0);
  SUCCEED();
}

TYPED_TEST(Api, RemoteFreesAcrossThreadsKeepContents) {
  using F = TypeParam;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 3000;
  struct Item {
    void* p;
    size_t n;
  };
  std::vector<std::vector<Item>> made(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t x = 0x9e3779b97f4a7c15ull * (t + 1);
      for (int i = 0; i < kPerThread; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (i % 100 == 0) ? 2 * kMiB + x % kMiB : (i % 10 == 0) ? 9000 + x % 200000 : 1 + x % 900;
        void* p = F::malloc(n);
        fill_pattern(p, n);
        made[t].push_back({p, n});
      }
    });
  }
  for (auto& t : ts) t.join();
  ts.clear();
  std::atomic<int> bad{0};
  mpcalloc_stats_t before;
  mpcalloc_stats_get(&before);
  // Thread t frees what thread t+1 allocated; every other block is reallocated first.
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      auto& items = made[(t + 1) % kThreads];
      for (size_t i = 0; i < items.size(); ++i) {
        Item it = items[i];
        if (!check_pattern(it.p, it.n)) ++bad;
        if (i % 2 == 0) {
          void* q = F::realloc(it.p, it.n + 100);
          if (q == nullptr || !check_pattern(q, it.n, it.p)) ++bad;
          it.p = q;
        }
        F::free(it.p);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  mpcalloc_stats_t after;
  mpcalloc_stats_get(&after);
  EXPECT_GT(after.remote_frees, before.remote_frees);
}

TYPED_TEST(Api, ExitedThreadsHeapIsReusedAndItsMemoryFreedElsewhere) {
  using F = TypeParam;
  // Warm up so this thread and the pool exist.
  std::thread([] { F::free(F::malloc(10)); }).join();
  mpcalloc_stats_t before;
  mpcalloc_stats_get(&before);
  std::vector<void*> leftovers;
  for (int round = 0; round < 100; ++round) {
    void* p = nullptr;
    std::thread([&] {
      p = F::malloc(64);
      fill_pattern(p, 64);
      void* tmp = F::malloc(5000);
      F::free(tmp);
    }).join();
    ASSERT_TRUE(check_pattern(p, 64));
    leftovers.push_back(p);
  }
  for (void* p : leftovers) F::free(p);  // freed by a thread that did not allocate them
  mpcalloc_stats_t after;
  mpcalloc_stats_get(&after);
  // 100 sequential threads share pooled heaps instead of creating one each.
  EXPECT_LE(after.heap_count - before.heap_count, 2u);
}
