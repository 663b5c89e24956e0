// Layer chunks: small runs, medium boundary-tag chunks, huge blocks, with a private state
// standing in for a heap.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "chunks/huge.h"
#include "chunks/medium.h"
#include "chunks/small.h"
#include "source/block_source.h"

using namespace mpcalloc;
using namespace mpcalloc::chunks;

namespace {
constexpr size_t kMiB = size_t{1} << 20;
int g_owner;

SmallState make_small() {
  SmallState s{};
  s.key = &g_owner;
  s.slow_key = reinterpret_cast<char*>(&g_owner) + 1;
  s.owner = &g_owner;
  return s;
}
MediumState make_medium() {
  MediumState m{};
  m.owner = &g_owner;
  return m;
}
}  // namespace

TEST(Small, RefillGivesDistinctBlocksOfTheClassInsideOneRun) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(48);
  Block* list = small_refill(s, cls);
  ASSERT_NE(list, nullptr);
  RunMeta* r = s.active[cls];
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->block_size, 48u);
  EXPECT_EQ(run_owner_key(r), &g_owner);
  std::set<Block*> seen;
  for (Block* b = list; b != nullptr; b = b->next) {
    EXPECT_TRUE(seen.insert(b).second);
    EXPECT_EQ(run_of(b), r);
    EXPECT_EQ((reinterpret_cast<char*>(b) - run_start(r)) % 48, 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 16, 0u);
  }
  EXPECT_EQ(seen.size(), kFirstCarveBytes / 48);  // a fresh run starts with a small batch
  EXPECT_EQ(run_table_of(list), reinterpret_cast<RunTable*>(run_segment_base(r)));
  EXPECT_EQ(run_index_of(list), r->index);
  for (Block* b : seen) small_free_local(s, r, b);
  EXPECT_GE(small_collect(s, true), 1u);
  EXPECT_EQ(s.active[cls], nullptr);
}

TEST(Small, FullRunGetsSlowKeyAndComesBackOnFree) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(8192);
  std::vector<Block*> all;
  RunMeta* first = nullptr;
  for (;;) {
    Block* l = small_refill(s, cls);
    ASSERT_NE(l, nullptr);
    if (first == nullptr) first = s.active[cls];
    if (s.active[cls] != first) break;  // the first run is full, a new one is active
    for (; l != nullptr; l = l->next) all.push_back(l);
  }
  EXPECT_EQ(first->state, kRunFull);
  EXPECT_EQ(run_owner_key(first), s.slow_key);
  EXPECT_EQ(all.size(), kRunSize / 8192);
  small_free_local(s, first, all[0]);
  EXPECT_EQ(first->state, kRunPartial);
  EXPECT_EQ(run_owner_key(first), s.key);
  EXPECT_EQ(s.partial[cls].head, first);
  for (size_t i = 1; i < all.size(); ++i) small_free_local(s, first, all[i]);
  EXPECT_EQ(small_collect(s, false), 1u);  // fully free partial run released
  EXPECT_EQ(s.partial[cls].head, nullptr);
}

TEST(Medium, ManySizesNeighboursIntactAndEverythingReturns) {
  MediumState m = make_medium();
  std::mt19937_64 rng(42);
  struct B {
    unsigned char* p;
    size_t n;
    unsigned char v;
  };
  std::vector<B> live;
  for (int i = 0; i < 400; ++i) {
    size_t n = 8193 + rng() % (300 * 1024);
    auto* p = static_cast<unsigned char*>(medium_alloc(m, n, 16));
    ASSERT_NE(p, nullptr);
    EXPECT_GE(medium_usable(p), n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
    auto v = static_cast<unsigned char>(i);
    std::memset(p, v, n);
    live.push_back({p, n, v});
    if (rng() % 3 == 0) {  // free a random live one
      size_t k = rng() % live.size();
      for (size_t j = 0; j < live[k].n; j += 97) ASSERT_EQ(live[k].p[j], live[k].v);
      medium_free(m, live[k].p);
      live.erase(live.begin() + static_cast<long>(k));
    }
  }
  std::shuffle(live.begin(), live.end(), rng);
  for (auto& b : live) {
    for (size_t j = 0; j < b.n; j += 97) ASSERT_EQ(b.p[j], b.v);
    ASSERT_EQ(b.p[b.n - 1], b.v);
    medium_free(m, b.p);
  }
  medium_flush_quick(m);
  // Every chunk is free: wholly free segments went back, the heap's last one is kept until
  // a collection.
  EXPECT_EQ(m.segment_count, 1u);
  EXPECT_EQ(medium_collect(m), 1u);
  EXPECT_EQ(m.segment_count, 0u);
}

TEST(Medium, ResizeInPlaceGrowsIntoFreeNeighbourAndShrinks) {
  MediumState m = make_medium();
  m.quick_off = true;
  auto* a = static_cast<unsigned char*>(medium_alloc(m, 20000, 16));
  auto* b = static_cast<unsigned char*>(medium_alloc(m, 20000, 16));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::memset(a, 5, 20000);
  medium_free(m, b);  // a's right neighbour is now free
  ASSERT_TRUE(medium_resize_in_place(m, a, 100000));
  EXPECT_GE(medium_usable(a), 100000u);
  for (size_t i = 0; i < 20000; ++i) ASSERT_EQ(a[i], 5);
  std::memset(a, 6, 100000);
  ASSERT_TRUE(medium_resize_in_place(m, a, 12000));
  EXPECT_LT(medium_usable(a), 20000u);
  auto* c = static_cast<unsigned char*>(medium_alloc(m, 50000, 16));  // reuses the freed tail
  ASSERT_NE(c, nullptr);
  EXPECT_GT(c, a);
  EXPECT_LT(c, a + 200000);
  EXPECT_EQ(a[11999], 6);
  medium_free(m, a);
  medium_free(m, c);
  medium_collect(m);
}

TEST(Medium, AlignedAndClassified) {
  MediumState m = make_medium();
  m.quick_off = true;
  for (size_t align : {size_t{64}, size_t{4096}, size_t{65536}}) {
    void* p = medium_alloc(m, 30000, align);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
    EXPECT_EQ(medium_classify(p), ChunkStatus::kInUse);
    EXPECT_EQ(medium_classify(static_cast<char*>(p) + 32), ChunkStatus::kInterior);
    medium_free(m, p);
  }
  void* keep = medium_alloc(m, 10000, 16);  // keeps the segment alive
  void* gone = medium_alloc(m, 10000, 16);
  medium_free(m, gone);
  EXPECT_NE(medium_classify(gone), ChunkStatus::kInUse);
  medium_free(m, keep);
  medium_collect(m);
}

TEST(Huge, AllocUsableResize) {
  HugeResult r = huge_alloc(5 * kMiB, 16, true);
  ASSERT_NE(r.p, nullptr);
  EXPECT_TRUE(r.is_zero);
  auto* seg = source::segment_header(source::segment_base_of(r.p));
  EXPECT_EQ(seg->kind, source::SegmentKind::kHuge);
  EXPECT_GE(huge_usable(seg), 5 * kMiB);
  std::memset(r.p, 3, 5 * kMiB);
  void* q = huge_resize(seg, 50 * kMiB);
  ASSERT_NE(q, nullptr);
  auto* c = static_cast<unsigned char*>(q);
  EXPECT_EQ(c[0], 3);
  EXPECT_EQ(c[5 * kMiB - 1], 3);
  auto* seg2 = source::segment_header(source::segment_base_of(q));
  EXPECT_GE(huge_usable(seg2), 50 * kMiB);
  huge_free(seg2);
  HugeResult a = huge_alloc(2 * kMiB, 1 << 20, false);
  ASSERT_NE(a.p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.p) % (1 << 20), 0u);
  huge_free(source::segment_header(source::segment_base_of(a.p)));
}

TEST(Huge, OveralignedRegistry) {
  void* p = huge_alloc_overaligned(10 * kMiB, size_t{1} << 26);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (size_t{1} << 26), 0u);
  EXPECT_GE(huge_usable_overaligned(p), 10 * kMiB);
  std::memset(p, 1, 10 * kMiB);
  int x;
  EXPECT_EQ(huge_usable_overaligned(&x), 0u);
  EXPECT_FALSE(huge_free_overaligned(&x));
  EXPECT_TRUE(huge_free_overaligned(p));
  EXPECT_FALSE(huge_free_overaligned(p));  // gone
}
