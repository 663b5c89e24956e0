// Layer heap: fast-path reuse, remote frees reclaimed, heap pool, trim.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

#include "heap/heap.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

TEST(Heap, FreedBlockIsReusedFirstOnTheSameThread) {
  void* a = heap::malloc_fast(64);
  void* b = heap::malloc_fast(64);
  ASSERT_NE(a, nullptr);
  heap::free_fast(a);
  heap::free_fast(b);
  // Freed blocks go to their run's local list; after the cached list drains, they come back.
  std::vector<void*> got;
  bool seen_a = false;
  for (int i = 0; i < 10000 && !seen_a; ++i) {
    void* p = heap::malloc_fast(64);
    seen_a = p == a || p == b;
    got.push_back(p);
  }
  EXPECT_TRUE(seen_a);
  for (void* p : got) heap::free_fast(p);
}

TEST(Heap, ThreadHasItsOwnHeapAndTheEmptyHeapBeforeAllocating) {
  heap::free_fast(heap::malloc_fast(16));
  heap::Heap* mine = heap::t_heap;
  EXPECT_NE(mine, &heap::g_empty_heap);
  heap::Heap* other = nullptr;
  heap::Heap* before = nullptr;
  std::thread([&] {
    before = heap::t_heap;
    heap::free_fast(heap::malloc_fast(16));
    other = heap::t_heap;
  }).join();
  EXPECT_EQ(before, &heap::g_empty_heap);
  EXPECT_NE(other, mine);
}

TEST(Heap, RemoteFreesAreCountedAndReclaimed) {
  mpcalloc_stats_t s0;
  mpcalloc_stats_get(&s0);
  std::vector<void*> blocks;
  for (int i = 0; i < 5000; ++i) blocks.push_back(heap::malloc_fast(static_cast<size_t>(i % 500) + 16));
  std::thread([&] {
    for (void* p : blocks) heap::free_fast(p);
  }).join();
  mpcalloc_stats_t s1;
  mpcalloc_stats_get(&s1);
  EXPECT_GE(s1.remote_frees - s0.remote_frees, 5000u);
  // The owner gets them back: allocating the same sizes maps no new memory.
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> again;
    for (int i = 0; i < 5000; ++i) again.push_back(heap::malloc_fast(static_cast<size_t>(i % 500) + 16));
    for (void* p : again) heap::free_fast(p);
  }
  mpcalloc_stats_t s2;
  mpcalloc_stats_get(&s2);
  EXPECT_EQ(s2.segment_count, s1.segment_count);
}

TEST(Heap, ExitedThreadHeapsArePooled) {
  std::thread([] { heap::free_fast(heap::malloc_fast(100)); }).join();
  mpcalloc_stats_t s0;
  mpcalloc_stats_get(&s0);
  for (int i = 0; i < 100; ++i) {
    std::thread([] {
      void* p = heap::malloc_fast(100);
      std::memset(p, 1, 100);
      heap::free_fast(p);
    }).join();
  }
  mpcalloc_stats_t s1;
  mpcalloc_stats_get(&s1);
  EXPECT_EQ(s1.heap_count, s0.heap_count);
}

TEST(Heap, TrimReturnsCachedMemory) {
  std::vector<void*> v;
  for (int i = 0; i < 20000; ++i) v.push_back(heap::malloc_fast(512));
  void* big = heap::allocate(30 << 20, 16, false);
  for (void* p : v) heap::free_fast(p);
  heap::free_fast(big);
  mpcalloc_stats_t s0;
  mpcalloc_stats_get(&s0);
  EXPECT_GT(s0.cached_bytes, 0u);
  heap::trim();
  mpcalloc_stats_t s1;
  mpcalloc_stats_get(&s1);
  EXPECT_EQ(s1.cached_bytes, 0u);
  EXPECT_LT(s1.mapped_bytes, s0.mapped_bytes);
}

TEST(Heap, UsableSizeByKind) {
  void* s = heap::allocate(100, 16, false);
  void* m = heap::allocate(100000, 16, false);
  void* h = heap::allocate(3 << 20, 16, false);
  EXPECT_EQ(heap::usable_size(s), 112u);  // the 112-byte class
  EXPECT_GE(heap::usable_size(m), 100000u);
  EXPECT_LT(heap::usable_size(m), 100000u * 9 / 8 + 64);
  EXPECT_GE(heap::usable_size(h), size_t{3} << 20);
  heap::deallocate(s, "free");
  heap::deallocate(m, "free");
  heap::deallocate(h, "free");
}
