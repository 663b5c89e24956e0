// Layer chunks: small runs, medium boundary-tag chunks, huge blocks, with a private state
// standing in for a heap.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include <sys/mman.h>

#include "chunks/huge.h"
#include "chunks/medium.h"
#include "chunks/small.h"
#include "os/os_env.h"
#include "os/os_memory.h"
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
// Refills class cls until its active run is full (the next refill opens another run): *run is
// that run, *blocks every block it handed out, in order.
void fill_active_run(SmallState& s, unsigned cls, RunMeta** run, std::vector<Block*>* blocks) {
  RunMeta* r = s.active[cls];
  for (;;) {
    Block* l = small_refill(s, cls);
    ASSERT_NE(l, nullptr);
    if (r == nullptr) r = s.active[cls];
    if (s.active[cls] != r) break;
    for (; l != nullptr; l = l->next) blocks->push_back(l);
  }
  *run = r;
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

// Runs that come back into play (a free to a full run) queue in order: a refill takes the
// one that has been partial the longest, which had the most time to gather frees. (Taking the
// newest, holding the single block just freed, made refills yield one block each.)
TEST(Small, RefillTakesTheOldestPartialRunFirst) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(8192);
  std::vector<RunMeta*> runs;
  std::vector<std::vector<Block*>> blocks;
  while (runs.size() < 3) {  // fills three runs; the refill that opens a fourth marks the third full
    Block* l = small_refill(s, cls);
    ASSERT_NE(l, nullptr);
    if (runs.empty() || s.active[cls] != runs.back()) {
      runs.push_back(s.active[cls]);
      blocks.emplace_back();
    }
    for (; l != nullptr; l = l->next) blocks.back().push_back(l);
  }
  ASSERT_EQ(runs[0]->state, kRunFull);
  ASSERT_EQ(runs[1]->state, kRunFull);
  small_free_local(s, runs[0], blocks[0][0]);  // run 0 back in play first, one block
  small_free_local(s, runs[1], blocks[1][0]);  // then run 1, one block
  small_free_local(s, runs[0], blocks[0][1]);  // run 0 gathers a second one
  EXPECT_EQ(s.partial[cls].head, runs[0]);
  EXPECT_EQ(s.partial[cls].tail, runs[1]);
  // Exhaust the active (third) run, then refill: run 0 comes first, with both its blocks.
  while (s.active[cls] == runs[2]) {
    Block* l = small_refill(s, cls);
    ASSERT_NE(l, nullptr);
    if (s.active[cls] == runs[2]) continue;
    EXPECT_EQ(s.active[cls], runs[0]);
    size_t n = 0;
    for (; l != nullptr; l = l->next) ++n;
    EXPECT_EQ(n, 2u);
  }
  EXPECT_EQ(s.partial[cls].head, runs[1]);
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

// Growing in place takes 1/8 headroom from a free neighbour, and small shrinks keep their
// slack, so a buffer grown by appends touches the free lists once per 1/8 of growth.
TEST(Medium, GrowthInPlaceKeepsHeadroomForTheNextAppends) {
  MediumState m = make_medium();
  m.quick_off = true;
  auto* a = static_cast<unsigned char*>(medium_alloc(m, 16000, 16));
  auto* b = static_cast<unsigned char*>(medium_alloc(m, 300000, 16));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  medium_free(m, b);  // a's right neighbour is free
  ASSERT_TRUE(medium_resize_in_place(m, a, 20000));
  size_t usable = medium_usable(a);
  EXPECT_GE(usable, 20000u + 20000u / 8);
  EXPECT_LT(usable, 20000u + 20000u / 4);
  // The next appends fit: the chunk does not change.
  for (size_t n = 20001; n <= 22000; n += 7) {
    ASSERT_TRUE(medium_resize_in_place(m, a, n));
    ASSERT_EQ(medium_usable(a), usable);
  }
  // A shrink by less than 1/8 keeps the slack; a real one gives the tail back.
  ASSERT_TRUE(medium_resize_in_place(m, a, usable - usable / 16));
  EXPECT_EQ(medium_usable(a), usable);
  ASSERT_TRUE(medium_resize_in_place(m, a, 5000));
  EXPECT_LT(medium_usable(a), 6000u);
  // The whole neighbour is usable again.
  auto* c = medium_alloc(m, 300000, 16);
  ASSERT_NE(c, nullptr);
  medium_free(m, c);
  medium_free(m, a);
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
  HugeResult r = huge_alloc(5 * kMiB, 16, true, 0);
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
  HugeResult a = huge_alloc(2 * kMiB, 1 << 20, false, 0);
  ASSERT_NE(a.p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.p) % (1 << 20), 0u);
  huge_free(source::segment_header(source::segment_base_of(a.p)));
}

TEST(Huge, OveralignedRegistry) {
  void* p = huge_alloc_overaligned(10 * kMiB, size_t{1} << 26, 0);
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

TEST(Small, EveryClassRefillsInsideItsRunWithConsistentLookups) {
  source::configure({256 * kMiB, 60000, 0, 0});  // no decay during the test: cache deltas are exact
  source::trim_cache();
  SmallState s = make_small();
  source::SourceStats s0 = source::stats();
  std::set<uintptr_t> all;
  std::vector<Block*> out;
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) {
    const size_t bs = base::small_class_size(cls);
    Block* list = small_refill(s, cls);
    ASSERT_NE(list, nullptr) << cls;
    RunMeta* r = s.active[cls];
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->cls, cls);
    EXPECT_EQ(r->block_size, bs);
    EXPECT_EQ(r->state, kRunActive);
    EXPECT_GE(r->index, 1u) << "run 0 holds the headers";
    EXPECT_EQ(run_capacity(r), kRunSize / bs);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(run_start(r)) % kRunSize, 0u);
    // The colour: a cache-line multiple that leaves room for every block.
    EXPECT_EQ(r->colour % kColourStep, 0u) << cls;
    EXPECT_LE(r->colour + run_capacity(r) * bs, kRunSize) << cls;
    if (base::is_pow2(bs)) {
      EXPECT_EQ(r->colour, 0u) << cls;
    }
    const uintptr_t start = reinterpret_cast<uintptr_t>(run_first(r));
    auto* seg = source::segment_header(run_segment_base(r));
    EXPECT_EQ(seg->kind, source::SegmentKind::kSmall);
    EXPECT_EQ(seg->owner, &g_owner);
    std::vector<Block*> batch;
    for (Block* b = list; b != nullptr; b = b->next) batch.push_back(b);
    for (Block* b : batch) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(b);
      ASSERT_GE(a, start);
      ASSERT_LE(a + bs, reinterpret_cast<uintptr_t>(run_start(r)) + kRunSize);
      ASSERT_LT(a, reinterpret_cast<uintptr_t>(r->bump));  // carved part only
      ASSERT_EQ((a - start) % bs, 0u);
      ASSERT_EQ(a % 16, 0u);
      if (base::is_pow2(bs)) {
        ASSERT_EQ(a % bs, 0u) << "power-of-two class " << bs;  // memalign relies on it
      }
      ASSERT_EQ(run_of(b), r);
      ASSERT_EQ(run_index_of(b), r->index);
      ASSERT_EQ(reinterpret_cast<uintptr_t>(run_table_of(b)), run_segment_base(r));
      ASSERT_EQ(run_table_of(reinterpret_cast<char*>(b) + bs - 1), run_table_of(b));
      ASSERT_TRUE(all.insert(a).second) << "block handed out twice";
      std::memset(b, static_cast<int>(cls), bs);  // blocks of one run do not overlap
      out.push_back(b);
    }
    EXPECT_EQ(batch.size(), std::max<size_t>(1, kFirstCarveBytes / bs)) << cls;
  }
  for (Block* b : out) {
    unsigned cls = run_of(b)->cls;
    const auto* c = reinterpret_cast<const unsigned char*>(b);
    ASSERT_EQ(c[base::small_class_size(cls) - 1], cls);
    ASSERT_EQ(c[8], cls);
  }
  // All the classes' runs share one segment (63 runs fit).
  for (Block* b : out) ASSERT_EQ(source::segment_base_of(b), source::segment_base_of(out[0]));
  for (Block* b : out) small_free_local(s, run_of(b), b);
  EXPECT_EQ(small_collect(s, true), base::kSmallClasses);
  for (unsigned cls = 0; cls < base::kSmallClasses; ++cls) EXPECT_EQ(s.active[cls], nullptr);
  EXPECT_EQ(s.segments.head, nullptr);  // the emptied segment went back to the source
  EXPECT_EQ(source::stats().cached_bytes, s0.cached_bytes + source::kSegmentSize);
}

// Without colours, the first lines of a 3 KiB class's blocks fall into the same 21 sets of a
// cache whose set period is 64 KiB (a 512 KiB 8-way L2) in every run.
TEST(Small, SuccessiveRunsOfAClassStartAtDifferentColours) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(3072);
  std::map<RunMeta*, std::vector<Block*>> runs;
  while (runs.size() < 5) {
    Block* l = small_refill(s, cls);
    ASSERT_NE(l, nullptr);
    for (; l != nullptr; l = l->next) runs[run_of(l)].push_back(l);
  }
  std::set<unsigned> colours;
  std::set<uintptr_t> sets;
  size_t full = 0;
  for (auto& [r, blocks] : runs) {
    colours.insert(r->colour);
    full += blocks.size() == kRunSize / 3072;
    for (Block* b : blocks) {
      ASSERT_EQ((reinterpret_cast<char*>(b) - run_first(r)) % 3072, 0);
      sets.insert((reinterpret_cast<uintptr_t>(b) % kRunSize) / 64);
    }
  }
  EXPECT_EQ(full, 4u);
  EXPECT_EQ(colours.size(), 5u);
  EXPECT_GT(sets.size(), 3 * (kRunSize / 3072));
  for (auto& [r, blocks] : runs) {
    for (Block* b : blocks) small_free_local(s, r, b);
  }
  EXPECT_GE(small_collect(s, true), 5u);
}

TEST(Small, TakeLocalReturnsOwnerFreesPlusAFreshBatchWhileYoungOrDry) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(64);
  std::vector<Block*> out;
  for (Block* b = small_refill(s, cls); b != nullptr; b = b->next) out.push_back(b);
  ASSERT_EQ(out.size(), kFirstCarveBytes / 64);
  RunMeta* r = s.active[cls];
  auto take = [&](std::set<Block*>& got) {
    got.clear();
    for (Block* b = small_take_local(r); b != nullptr; b = b->next) ASSERT_TRUE(got.insert(b).second);
    EXPECT_EQ(run_local_free(r), nullptr);
  };
  auto none_live = [&](const std::set<Block*>& got, const std::set<Block*>& freed) {
    for (Block* b : out) {
      if (freed.count(b) == 0) {
        EXPECT_EQ(got.count(b), 0u) << "live block reissued";
      }
    }
  };
  // Young (4 KiB carved): the frees plus a fresh batch.
  std::set<Block*> freed = {out[3], out[7], out[11]};
  for (Block* b : freed) small_free_local(s, r, b);
  std::set<Block*> got;
  ASSERT_NO_FATAL_FAILURE(take(got));
  EXPECT_EQ(got.size(), 3 + kCarveBytes / 64);
  for (Block* b : freed) EXPECT_EQ(got.count(b), 1u);
  none_live(got, freed);
  out.erase(std::remove_if(out.begin(), out.end(), [&](Block* b) { return freed.count(b) != 0; }),
            out.end());
  out.insert(out.end(), got.begin(), got.end());
  // Past kCarveBytes, nothing freed (malloc popped the list dry): a fresh batch alone.
  ASSERT_NO_FATAL_FAILURE(take(got));
  EXPECT_EQ(got.size(), kCarveBytes / 64);
  none_live(got, {});
  out.insert(out.end(), got.begin(), got.end());
  // ... and with frees, the frees alone: the run grows only when nothing is there to reuse.
  small_free_local(s, r, out[5]);
  ASSERT_NO_FATAL_FAILURE(take(got));
  EXPECT_EQ(got, std::set<Block*>{out[5]});
  // Blocks not freed keep their run from being released.
  small_free_local(s, r, out[5]);
  EXPECT_EQ(small_collect(s, true), 0u);
  for (size_t i = 0; i < out.size(); ++i) {
    if (i != 5) small_free_local(s, r, out[i]);
  }
  EXPECT_EQ(small_collect(s, true), 1u);
}

// Draining other threads' frees splices a stretch of one run's blocks onto the run's list in
// one step: the chain keeps its order, lands in front of what the run held, and a full run
// comes back into play at the end of the partial queue as with single frees.
TEST(Small, FreeChainSplicesInOrderAndBringsAFullRunBack) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(8192);
  std::vector<Block*> all;
  RunMeta* first = nullptr;
  ASSERT_NO_FATAL_FAILURE(fill_active_run(s, cls, &first, &all));
  ASSERT_EQ(first->state, kRunFull);
  ASSERT_GE(all.size(), 5u);
  small_free_local(s, first, all[4]);  // back in play with one block
  EXPECT_EQ(s.partial[cls].tail, first);
  // all[0] -> all[1] -> all[2], as a sender would have linked them.
  all[0]->next = all[1];
  all[1]->next = all[2];
  all[2]->next = reinterpret_cast<Block*>(0x1);  // overwritten by the splice
  small_free_chain_unkeyed(s, first, all[0], all[2]);
  std::vector<Block*> got;
  for (Block* b = run_local_free(first); b != nullptr; b = b->next) got.push_back(b);
  EXPECT_EQ(got, (std::vector<Block*>{all[0], all[1], all[2], all[4]}));
  EXPECT_EQ(first->state, kRunPartial);
  EXPECT_EQ(run_owner_key(first), s.key);  // the owner's own free keyed it: it stays keyed
}

// A full run that only other threads' frees bring back (a drain) goes to the end of the
// partial queue without the fast-free key, so a collector of the idle heap may release it;
// the owner's first free into it, or a refill that takes it, gives it the key.
TEST(Small, RunBroughtBackByADrainIsKeyedOnlyWhenTheOwnerUsesIt) {
  unsigned cls = base::small_class_of(8192);
  for (bool by_free : {true, false}) {
    SCOPED_TRACE(by_free ? "owner's free" : "refill");
    SmallState s = make_small();
    RunMeta* r = nullptr;
    std::vector<Block*> blocks;
    ASSERT_NO_FATAL_FAILURE(fill_active_run(s, cls, &r, &blocks));
    ASSERT_EQ(r->state, kRunFull);
    ASSERT_GE(blocks.size(), 3u);
    blocks[0]->next = blocks[1];
    small_free_chain_unkeyed(s, r, blocks[0], blocks[1]);
    EXPECT_EQ(r->state, kRunPartial);
    EXPECT_EQ(s.partial[cls].tail, r);
    EXPECT_EQ(run_owner_key(r), s.slow_key);
    if (by_free) {
      small_free_local(s, r, blocks[2]);
      EXPECT_EQ(run_owner_key(r), s.key);
      EXPECT_EQ(r->state, kRunPartial);
    } else {
      // Exhaust the active run: the refill after it takes r, the queue's only run.
      while (s.active[cls] != r) ASSERT_NE(small_refill(s, cls), nullptr);
      EXPECT_EQ(run_owner_key(r), s.key);
      EXPECT_EQ(r->state, kRunActive);
    }
  }
}

// An active run whose blocks are all out goes to the back of the partial queue still keyed,
// so frees to it stay on the fast path (with random frees over many runs of a class, marking
// it full cost a slow free for each run taken: glibc_thread 7.6 % of its instructions). A
// refill that finds it still empty at the front marks it full then.
TEST(Small, ExhaustedRunWaitsInThePartialQueueTakingFastFrees) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(8192);
  RunMeta* a = nullptr;
  std::vector<Block*> a_blocks;
  ASSERT_NO_FATAL_FAILURE(fill_active_run(s, cls, &a, &a_blocks));
  ASSERT_EQ(a->state, kRunFull);  // alone in play: marked full when it ran out
  RunMeta* b = s.active[cls];
  small_free_local(s, a, a_blocks[0]);
  ASSERT_EQ(s.partial[cls].head, a);
  std::vector<Block*> b_blocks;
  while (s.active[cls] == b) {  // exhaust b: a (one free block) comes in
    Block* l = small_refill(s, cls);
    ASSERT_NE(l, nullptr);
    for (; l != nullptr; l = l->next) {
      if (run_of(l) == b) b_blocks.push_back(l);
    }
  }
  ASSERT_EQ(s.active[cls], a);
  EXPECT_EQ(b->state, kRunPartial);
  EXPECT_EQ(run_owner_key(b), s.key);
  EXPECT_EQ(s.partial[cls].head, b);
  ASSERT_FALSE(b_blocks.empty());
  // A free to b now is what the fast path does: a push on its list, nothing else.
  small_free_local(s, b, b_blocks[0]);
  EXPECT_EQ(run_local_free(b), b_blocks[0]);
  EXPECT_EQ(b->state, kRunPartial);
  Block* l = small_refill(s, cls);  // a ran out: b comes in with its block, a waits
  EXPECT_EQ(l, b_blocks[0]);
  EXPECT_EQ(s.active[cls], b);
  EXPECT_EQ(s.partial[cls].head, a);
  EXPECT_EQ(a->state, kRunPartial);
  l = small_refill(s, cls);  // both empty at their turn: marked full, a new run comes
  ASSERT_NE(l, nullptr);
  EXPECT_NE(s.active[cls], a);
  EXPECT_NE(s.active[cls], b);
  EXPECT_EQ(s.partial[cls].head, nullptr);
  for (RunMeta* r : {a, b}) {
    EXPECT_EQ(r->state, kRunFull);
    EXPECT_EQ(run_owner_key(r), s.slow_key);
  }
}

// A collection counts a partial run's free blocks by walking only those freed since its last
// count; a run whose list was taken in the meantime is counted afresh, even when the block
// that headed the counted list comes back first.
TEST(Small, CollectCountsNewFreesOnlyAndForgetsTakenLists) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(8192);
  std::vector<Block*> all;
  RunMeta* first = nullptr;
  ASSERT_NO_FATAL_FAILURE(fill_active_run(s, cls, &first, &all));
  ASSERT_EQ(all.size(), kRunSize / 8192);
  small_free_local(s, first, all[2]);
  small_free_local(s, first, all[1]);
  small_free_local(s, first, all[0]);  // list: 0 1 2
  EXPECT_EQ(small_collect(s, false), 0u);
  EXPECT_EQ(first->counted, 3u);
  small_free_local(s, first, all[3]);  // list: 3 0 1 2; only block 3 is new
  EXPECT_EQ(small_collect(s, false), 0u);
  EXPECT_EQ(first->counted, 4u);
  // `first` becomes active again: its list is taken whole and handed out...
  RunMeta* second = s.active[cls];
  while (s.active[cls] == second) ASSERT_NE(small_refill(s, cls), nullptr);
  ASSERT_EQ(s.active[cls], first);
  EXPECT_EQ(first->counted, 0u);
  // ...and the block that headed the counted list comes back first: it is counted afresh.
  small_free_local(s, first, all[3]);
  EXPECT_EQ(small_collect(s, true), 0u);
  // The active run's list is the malloc list (the heap pops it): its count is forgotten.
  EXPECT_EQ(first->counted, 0u);
  for (size_t i = 0; i < all.size(); ++i) {
    if (i != 3) small_free_local(s, first, all[i]);
  }
  EXPECT_EQ(small_collect(s, true), 1u);  // every block free: released
}

namespace {
// Frees `order` (indices into blocks) of run r, in that order.
void free_in_order(SmallState& s, RunMeta* r, const std::vector<Block*>& blocks,
                   const std::vector<size_t>& order) {
  for (size_t i : order) small_free_local(s, r, blocks[i]);
}

// Refills class cls until partial run r becomes active again: the list it comes with.
std::vector<Block*> refill_until_active(SmallState& s, unsigned cls, RunMeta* r) {
  std::vector<Block*> got;
  while (s.active[cls] != r) {
    Block* l = small_refill(s, cls);
    if (l == nullptr) break;
    if (s.active[cls] != r) continue;
    for (; l != nullptr; l = l->next) got.push_back(l);
  }
  return got;
}
}  // namespace

// A partial run that a collection counted comes back into use with its free blocks in address
// order (the next mallocs hand out neighbours), the few freed after the count included; with
// more than kReorderWalk new ones, or never counted, or no more than kReorderMin free blocks
// in all, in the order of the frees (newest first). The set of blocks is exactly the freed
// one either way.
TEST(Small, CountedPartialRunComesBackInAddressOrder) {
  for (int variant = 0; variant < 4; ++variant) {
    SCOPED_TRACE(variant == 0   ? "counted, few new"
                 : variant == 1 ? "counted, many new"
                 : variant == 2 ? "never counted"
                                : "counted, a handful in all");
    SmallState s = make_small();
    unsigned cls = base::small_class_of(48);
    std::vector<Block*> all;
    RunMeta* first = nullptr;
    ASSERT_NO_FATAL_FAILURE(fill_active_run(s, cls, &first, &all));
    ASSERT_GT(all.size(), 600u);
    std::vector<size_t> idx;
    for (size_t i = 0; i < all.size(); i += 3) idx.push_back(i);
    std::shuffle(idx.begin(), idx.end(), std::mt19937(42 + variant));
    if (variant == 3) idx.resize(kReorderMin);
    size_t late = variant == 1 ? kReorderWalk + 1 : variant == 3 ? 2 : 5;
    std::vector<size_t> before(idx.begin(), idx.end() - static_cast<long>(late));
    std::vector<size_t> after(idx.end() - static_cast<long>(late), idx.end());
    free_in_order(s, first, all, before);
    if (variant != 2) {
      EXPECT_EQ(small_collect(s, false), 0u);
      EXPECT_EQ(first->counted, before.size());
    }
    free_in_order(s, first, all, after);
    std::vector<Block*> got = refill_until_active(s, cls, first);
    ASSERT_EQ(s.active[cls], first);
    EXPECT_EQ(first->counted, 0u);
    std::vector<Block*> want;
    for (size_t i : idx) want.push_back(all[i]);
    if (variant == 0) {
      std::sort(want.begin(), want.end());
    } else {
      std::reverse(want.begin(), want.end());  // the list is a stack of the frees
    }
    EXPECT_EQ(got, want);
    // Everything back: the run is released whole.
    for (Block* b : got) small_free_local(s, first, b);
    for (size_t i = 0; i < all.size(); ++i) {
      if (std::find(idx.begin(), idx.end(), i) == idx.end()) small_free_local(s, first, all[i]);
    }
    EXPECT_GE(small_collect(s, true), 1u);
    EXPECT_EQ(run_state(first), kRunUnused);
  }
}

TEST(Small, SetKeyRekeysActiveAndPartialRuns) {
  SmallState s = make_small();
  unsigned big = base::small_class_of(8192), tiny = base::small_class_of(16);
  std::vector<Block*> blocks;
  RunMeta* full = nullptr;
  for (;;) {  // fill one 8 KiB run so it becomes full, then partial after a free
    Block* l = small_refill(s, big);
    if (full == nullptr) full = s.active[big];
    if (s.active[big] != full) {
      blocks.push_back(l);
      break;
    }
    for (; l != nullptr; l = l->next) blocks.push_back(l);
  }
  small_free_local(s, full, blocks[0]);
  ASSERT_EQ(full->state, kRunPartial);
  Block* t = small_refill(s, tiny);
  ASSERT_NE(t, nullptr);
  int other_key;
  small_set_key(s, &other_key);
  EXPECT_EQ(s.key, &other_key);
  EXPECT_EQ(run_owner_key(full), &other_key);
  EXPECT_EQ(run_owner_key(s.active[big]), &other_key);
  EXPECT_EQ(run_owner_key(s.active[tiny]), &other_key);
  small_set_key(s, s.slow_key);
  EXPECT_EQ(run_owner_key(s.active[tiny]), s.slow_key);
}

TEST(SmallDeathTest, CheckBlockAcceptsBlocksAndStopsOnCorruptPointers) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(32);
  Block* list = small_refill(s, cls);
  ASSERT_NE(list, nullptr);
  small_check_block(list);  // a valid block passes
  small_check_block(list->next);
  int on_stack = 0;
  EXPECT_DEATH(small_check_block(reinterpret_cast<Block*>(&on_stack)), "corrupted free list");
  EXPECT_DEATH(small_check_block(reinterpret_cast<Block*>(reinterpret_cast<char*>(list) + 8)),
               "corrupted free list of run");
  RunMeta* r = s.active[cls];
  EXPECT_DEATH(small_check_block(reinterpret_cast<Block*>(r->bump)), "corrupted free list of run");
}

TEST(Medium, BoundaryTagsMergeWithBothNeighbours) {
  MediumState m = make_medium();
  m.quick_off = true;
  void* a = medium_alloc(m, 20000, 16);
  void* b = medium_alloc(m, 30000, 16);
  void* c = medium_alloc(m, 40000, 16);
  void* d = medium_alloc(m, 20000, 16);  // keeps c from merging with the arena's rest
  ASSERT_TRUE(a && b && c && d);
  ASSERT_EQ(static_cast<char*>(a) + medium_usable(a) + kChunkHeader, b);  // carved in order
  ASSERT_EQ(static_cast<char*>(b) + medium_usable(b) + kChunkHeader, c);
  size_t total = medium_usable(a) + medium_usable(b) + medium_usable(c) + 3 * kChunkHeader;
  medium_free(m, a);
  medium_free(m, c);
  EXPECT_EQ(medium_classify(a), ChunkStatus::kFree);
  EXPECT_EQ(medium_classify(b), ChunkStatus::kInUse);
  EXPECT_EQ(medium_classify(c), ChunkStatus::kFree);
  medium_free(m, b);  // merges with a (left) and c (right) at once
  EXPECT_EQ(medium_classify(a), ChunkStatus::kFree);
  EXPECT_EQ(medium_classify(b), ChunkStatus::kInterior);
  EXPECT_EQ(medium_classify(c), ChunkStatus::kInterior);
  EXPECT_EQ(medium_classify(d), ChunkStatus::kInUse);
  EXPECT_EQ(chunk_size(chunk_of(a)), total);
  // The merged chunk serves a request that none of the three could.
  void* e = medium_alloc(m, total - 3 * kChunkHeader - 4096, 16);
  EXPECT_EQ(e, a);
  medium_free(m, e);
  medium_free(m, d);
  EXPECT_EQ(medium_collect(m), 1u);
  EXPECT_EQ(m.segment_count, 0u);
}

TEST(Medium, RandomFreesKeepEveryLiveBlockIntactAndReturnAllSegments) {
  for (bool quick_off : {true, false}) {
    MediumState m = make_medium();
    m.quick_off = quick_off;
    std::mt19937_64 rng(7 + quick_off);
    struct B {
      uint64_t* p;
      size_t words;
      uint64_t tag;
    };
    std::vector<B> live;
    auto verify_all = [&] {
      for (const B& b : live) {
        ASSERT_EQ(b.p[0], b.tag);
        ASSERT_EQ(b.p[b.words / 2], b.tag);
        ASSERT_EQ(b.p[b.words - 1], b.tag);
      }
    };
    for (int i = 0; i < 600; ++i) {
      size_t n = (rng() % 4 == 0) ? 200000 + rng() % (kMediumMax - 200000) : 8193 + rng() % 60000;
      auto* p = static_cast<uint64_t*>(medium_alloc(m, n, 16));
      ASSERT_NE(p, nullptr);
      ASSERT_GE(medium_usable(p), n);
      ASSERT_EQ(medium_classify(p), ChunkStatus::kInUse);
      uint64_t tag = rng() | 1;
      size_t words = n / 8;
      for (size_t w = 0; w < words; ++w) p[w] = tag;
      live.push_back({p, words, tag});
      if (rng() % 2 == 0) {
        size_t k = rng() % live.size();
        medium_free(m, live[k].p);
        live[k] = live.back();
        live.pop_back();
        if (i % 16 == 0) verify_all();
      }
    }
    verify_all();
    EXPECT_GE(m.segment_count, 2u);  // the test spans several segments
    std::shuffle(live.begin(), live.end(), rng);
    while (!live.empty()) {
      medium_free(m, live.back().p);
      live.pop_back();
      if (live.size() % 32 == 0) verify_all();
    }
    // Boundary tags alone: every chunk merged, wholly free segments went back except the last.
    // (With quick lists, chunks waiting there pin their segments until the collection.)
    if (quick_off) {
      EXPECT_EQ(m.segment_count, 1u);
    }
    medium_collect(m);
    EXPECT_EQ(m.segment_count, 0u) << "quick_off " << quick_off;
    EXPECT_EQ(m.quick_bytes, 0u);
    EXPECT_EQ(m.segments.head, nullptr);
  }
}

TEST(Medium, QuickListHandsBackTheSameChunk) {
  MediumState m = make_medium();
  void* a = medium_alloc(m, 50000, 16);
  ASSERT_NE(a, nullptr);
  medium_free(m, a);
  EXPECT_GT(m.quick_bytes, 0u);
  EXPECT_EQ(medium_alloc(m, 50000, 16), a);  // LIFO, same class
  EXPECT_EQ(m.quick_bytes, 0u);
  medium_free(m, a);
  void* other = medium_alloc(m, 20000, 16);  // another class: not the cached chunk
  EXPECT_NE(other, a);
  medium_flush_quick(m);
  EXPECT_EQ(m.quick_bytes, 0u);
  EXPECT_EQ(medium_classify(a), ChunkStatus::kFree);
  medium_free(m, other);
  medium_collect(m);
  EXPECT_EQ(m.segment_count, 0u);
}

// A freed chunk of any segment (not only the newest) waits in its class's quick list while the
// heap has more in use than the lists hold, and the next request of the class gets the same
// address: a class's chunks keep their places, so the pages touched are the ones reused.
TEST(Medium, QuickListsKeepChunksInPlaceInOlderSegments) {
  MediumState m = make_medium();
  std::vector<void*> live;
  while (m.segment_count < 3) {
    void* p = medium_alloc(m, 200000, 16);
    ASSERT_NE(p, nullptr);
    live.push_back(p);
  }
  void* first = live[1];  // in the oldest segment
  ASSERT_NE(source::segment_base_of(first), source::segment_base(m.segments.head));
  size_t in_use = m.in_use_bytes;
  medium_free(m, first);
  EXPECT_EQ(m.in_use_bytes + medium_usable(first) + kChunkHeader, in_use);
  EXPECT_GT(m.quick_bytes, 0u);
  EXPECT_EQ(medium_alloc(m, 200000, 16), first);  // the same class: the same place
  for (void* p : live) medium_free(m, p);
  medium_collect(m);
  EXPECT_EQ(m.segment_count, 0u);
  EXPECT_EQ(m.in_use_bytes, 0u);
}

// A program that frees most of its medium memory: the quick lists never hold more than the
// heap still has in use, so the chunks merge and the emptied segments go back at the frees
// (all but the last one, which stays for reuse), with no collection.
TEST(Medium, QuickListsGiveWayWhenMostMemoryIsFreed) {
  MediumState m = make_medium();
  std::vector<void*> live;
  while (m.segment_count < 6) live.push_back(medium_alloc(m, 100000 + 3000 * (live.size() % 7), 16));
  for (void* p : live) medium_free(m, p);
  EXPECT_EQ(m.in_use_bytes, 0u);
  EXPECT_LE(m.quick_bytes, kQuickMaxBytes);
  EXPECT_LE(m.segment_count, 2u);  // the newest segment's quick chunks may keep it
  medium_collect(m);
  EXPECT_EQ(m.segment_count, 0u);
}

// A request that no free chunk fits splits a waiting quick chunk of a larger class before a
// new segment is mapped.
TEST(Medium, RequestSplitsALargerQuickChunkBeforeMapping) {
  MediumState m = make_medium();
  std::vector<void*> live;
  while (m.segment_count < 2) live.push_back(medium_alloc(m, 500000, 16));
  void* big = live.front();
  medium_free(m, big);  // waits in the quick list of its class (much is still in use)
  ASSERT_GT(m.quick_bytes, 0u);
  bool reused = false;
  while (m.segment_count < 3) {
    void* p = medium_alloc(m, 9000, 16);
    ASSERT_NE(p, nullptr);
    if (p == big) reused = true;
    if (m.segment_count < 3) live.push_back(p);
    else medium_free(m, p);
  }
  EXPECT_TRUE(reused) << "a third segment was mapped while a 500 KB chunk waited";
  for (size_t i = 1; i < live.size(); ++i) medium_free(m, live[i]);  // live[0]: freed above
  medium_collect(m);
  EXPECT_EQ(m.segment_count, 0u);
}

// Under a memory limit, a request that would need a new segment the limit refuses is served by
// merging what waits in the quick lists (two freed neighbours make room for a larger block),
// instead of failing.
TEST(Medium, UnderAMemoryLimitQuickChunksMergeBeforeAllocationFails) {
  source::trim_cache();
  size_t limit = source::stats().mapped_bytes + 3 * source::kSegmentSize;
  source::configure({0, 60000, limit, 0});
  MediumState m = make_medium();
  std::vector<void*> live;
  while (m.segment_count < 3) {
    void* p = medium_alloc(m, 100000, 16);
    ASSERT_NE(p, nullptr);
    live.push_back(p);
  }
  // Neighbouring pairs freed (a quarter of the memory): they wait in the quick list unmerged.
  size_t freed = 0;
  for (size_t i = 0; i + 1 < live.size(); i += 8) {
    medium_free(m, live[i]);
    medium_free(m, live[i + 1]);
    live[i] = live[i + 1] = nullptr;
    freed += 2;
  }
  ASSERT_GE(freed, 4u);
  ASSERT_GT(m.quick_bytes, 0u);
  uint64_t hits = source::stats().limit_hits;
  // Fill the third segment until the next 180 KB block needs a fourth, which the limit refuses.
  size_t got = 0;
  for (;;) {
    void* p = medium_alloc(m, 180000, 16);
    if (p == nullptr) break;
    live.push_back(p);
    ++got;
  }
  EXPECT_EQ(m.segment_count, 3u);
  EXPECT_GT(source::stats().limit_hits, hits);
  EXPECT_EQ(m.quick_bytes, 0u);  // flushed into the free lists when the limit was hit
  EXPECT_GE(got, 20u + freed / 2) << "merged pairs were not used: " << got << " blocks, " << freed << " freed";
  for (void* p : live) {
    if (p != nullptr) medium_free(m, p);
  }
  medium_collect(m);
  EXPECT_EQ(m.segment_count, 0u);
  source::configure({64 << 20, 1000, 0, 0});
}

// A chunk grown in place past the largest quick class (1 MiB) merges when freed: it has no
// quick list (its class index would be past the array; UBSan caught the write there).
TEST(Medium, ChunkGrownPastTheLargestClassIsNotQuickListed) {
  MediumState m = make_medium();
  std::vector<void*> keep;
  for (int i = 0; i < 3; ++i) keep.push_back(medium_alloc(m, kMediumMax, 16));
  void* p = medium_alloc(m, kMediumMax, 16);  // the last one of its segment: free space after
  ASSERT_NE(p, nullptr);
  for (void* k : keep) ASSERT_NE(k, nullptr);
  ASSERT_TRUE(medium_resize_in_place(m, p, kMediumMax + 100000));
  ASSERT_GT(medium_usable(p), kMediumMax);
  medium_free(m, p);
  EXPECT_EQ(m.quick_bytes, 0u);
  EXPECT_EQ(medium_classify(p), ChunkStatus::kFree);
  for (void* k : keep) medium_free(m, k);
  medium_collect(m);
  EXPECT_EQ(m.segment_count, 0u);
  EXPECT_EQ(m.in_use_bytes, 0u);
}

TEST(Medium, ResizeInPlaceFailsAgainstAnInUseNeighbour) {
  MediumState m = make_medium();
  m.quick_off = true;
  auto* a = static_cast<unsigned char*>(medium_alloc(m, 20000, 16));
  auto* b = static_cast<unsigned char*>(medium_alloc(m, 20000, 16));
  ASSERT_TRUE(a && b);
  std::memset(a, 1, 20000);
  std::memset(b, 2, 20000);
  size_t usable = medium_usable(a);
  EXPECT_FALSE(medium_resize_in_place(m, a, usable + 1));
  EXPECT_EQ(medium_usable(a), usable);
  EXPECT_TRUE(medium_resize_in_place(m, a, usable));  // same size: trivially fine
  for (size_t i = 0; i < 20000; ++i) ASSERT_EQ(b[i], 2);
  // Shrinking a little (less than a minimal chunk) keeps the size; a lot frees the tail.
  EXPECT_TRUE(medium_resize_in_place(m, a, usable - 16));
  EXPECT_EQ(medium_usable(a), usable);
  EXPECT_TRUE(medium_resize_in_place(m, a, 9000));
  EXPECT_LT(medium_usable(a), usable);
  EXPECT_GE(medium_usable(a), 9000u);
  EXPECT_EQ(medium_classify(a + medium_usable(a) + kChunkHeader), ChunkStatus::kFree);
  for (size_t i = 0; i < 9000; ++i) ASSERT_EQ(a[i], 1);
  for (size_t i = 0; i < 20000; ++i) ASSERT_EQ(b[i], 2);
  // Now it can grow back into its own freed tail.
  EXPECT_TRUE(medium_resize_in_place(m, a, 19000));
  for (size_t i = 0; i < 9000; ++i) ASSERT_EQ(a[i], 1);
  medium_free(m, a);
  medium_free(m, b);
  EXPECT_EQ(medium_collect(m), 1u);
}

TEST(Medium, AlignedAllocationsKeepNeighboursAndMerge) {
  MediumState m = make_medium();
  m.quick_off = true;
  std::vector<std::pair<unsigned char*, size_t>> got;
  for (size_t align : {size_t{32}, size_t{256}, size_t{4096}, size_t{65536}, size_t{262144}}) {
    for (size_t size : {size_t{9000}, size_t{70000}}) {
      auto* p = static_cast<unsigned char*>(medium_alloc(m, size, align));
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << align;
      EXPECT_GE(medium_usable(p), size);
      EXPECT_EQ(medium_classify(p), ChunkStatus::kInUse);
      std::memset(p, static_cast<int>(got.size() + 1), size);
      got.push_back({p, size});
    }
  }
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].first[0], i + 1);
    ASSERT_EQ(got[i].first[got[i].second - 1], i + 1);
  }
  for (auto& g : got) medium_free(m, g.first);
  EXPECT_EQ(medium_collect(m), 1u);  // leads and tails all merged back
}

TEST(Medium, ClassifyOutsideTheArena) {
  MediumState m = make_medium();
  void* p = medium_alloc(m, 10000, 16);
  ASSERT_NE(p, nullptr);
  uintptr_t base = source::segment_base_of(p);
  EXPECT_EQ(medium_classify(reinterpret_cast<void*>(base + 100)), ChunkStatus::kOutside);
  EXPECT_EQ(medium_classify(reinterpret_cast<void*>(base + kMediumArenaOffset)), ChunkStatus::kOutside);
  EXPECT_EQ(medium_classify(reinterpret_cast<void*>(base + kMediumArenaOffset + kChunkHeader)),
            ChunkStatus::kInUse);  // the first chunk is p's
  EXPECT_EQ(p, reinterpret_cast<void*>(base + kMediumArenaOffset + kChunkHeader));
  // The end of the arena lies inside its last (free) chunk.
  EXPECT_EQ(medium_classify(reinterpret_cast<void*>(base + source::kSegmentSize - 8)), ChunkStatus::kInterior);
  // Bigger than a segment's arena: cannot be a medium chunk.
  EXPECT_EQ(medium_alloc(m, source::kSegmentSize, 16), nullptr);
  medium_free(m, p);
  medium_collect(m);
}

TEST(Huge, AlignmentsAndUsable) {
  for (size_t align : {size_t{16}, size_t{64}, size_t{4096}, size_t{1} << 20, size_t{2} << 20}) {
    HugeResult r = huge_alloc(kMediumMax + 12345, align, false, 0);
    ASSERT_NE(r.p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.p) % align, 0u);
    auto* seg = source::segment_header(source::segment_base_of(r.p));
    EXPECT_EQ(seg->kind, source::SegmentKind::kHuge);
    EXPECT_GE(huge_usable(seg), kMediumMax + 12345);
    // The user block ends exactly at the end of the mapping.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.p) + huge_usable(seg), source::segment_base(seg) + seg->map_size);
    EXPECT_GE(reinterpret_cast<uintptr_t>(r.p), reinterpret_cast<uintptr_t>(seg) + sizeof(HugeHeader));
    std::memset(r.p, 1, huge_usable(seg));
    huge_free(seg);
  }
}

TEST(Huge, ResizeShrinksKeepingContents) {
  HugeResult r = huge_alloc(40 * kMiB, 16, false, 0);
  ASSERT_NE(r.p, nullptr);
  auto* seg = source::segment_header(source::segment_base_of(r.p));
  auto* c = static_cast<unsigned char*>(r.p);
  for (size_t i = 0; i < 40 * kMiB; i += 4096) c[i] = static_cast<unsigned char>(i >> 12);
  size_t usable = huge_usable(seg);
  // Less than half smaller: the mapping stays.
  ASSERT_EQ(huge_resize(seg, 30 * kMiB), r.p);
  EXPECT_EQ(huge_usable(seg), usable);
  // Much smaller: the mapping shrinks in place.
  ASSERT_EQ(huge_resize(seg, 3 * kMiB), r.p);
  EXPECT_GE(huge_usable(seg), 3 * kMiB);
  EXPECT_LT(huge_usable(seg), 4 * kMiB);
  for (size_t i = 0; i < 3 * kMiB; i += 4096) ASSERT_EQ(c[i], static_cast<unsigned char>(i >> 12));
  // And grows again with contents kept, wherever it lands.
  void* q = huge_resize(seg, 45 * kMiB);
  ASSERT_NE(q, nullptr);
  auto* seg2 = source::segment_header(source::segment_base_of(q));
  EXPECT_GE(huge_usable(seg2), 45 * kMiB);
  c = static_cast<unsigned char*>(q);
  for (size_t i = 0; i < 3 * kMiB; i += 4096) ASSERT_EQ(c[i], static_cast<unsigned char>(i >> 12));
  huge_free(seg2);
}

// A block handed out from the cache can be much larger than asked. Growing it by small steps
// (a buffer built by appends) stays in the mapping: no mremap, no pages given back and faulted
// in again. Only a real shrink (below the last request, to under half) gives the tail back.
TEST(Huge, GrowthInsideALargerCachedBlockDoesNoSyscall) {
  source::configure({256 * kMiB, 60000, 0, 0});
  HugeResult big = huge_alloc(3 * kMiB, 16, false, 0);
  ASSERT_NE(big.p, nullptr);
  huge_free(source::segment_header(source::segment_base_of(big.p)));  // into the cache
  HugeResult r = huge_alloc(kMiB + 4096, 16, false, 0);
  ASSERT_NE(r.p, nullptr);
  auto* seg = source::segment_header(source::segment_base_of(r.p));
  ASSERT_GE(huge_usable(seg), 3 * kMiB) << "expected the cached 3 MiB block back";
  uint64_t remaps = mpcalloc::os::counters().mremap_calls;
  size_t usable = huge_usable(seg);
  for (size_t n = kMiB + 4096; n < 2 * kMiB; n += 100) {
    ASSERT_EQ(huge_resize(seg, n), r.p);
  }
  EXPECT_EQ(mpcalloc::os::counters().mremap_calls, remaps);
  EXPECT_EQ(huge_usable(seg), usable);
  // A shrink below the last request to well under half of the mapping does give it back.
  ASSERT_EQ(huge_resize(seg, 256 * 1024), r.p);
  EXPECT_GT(mpcalloc::os::counters().mremap_calls, remaps);
  EXPECT_LT(huge_usable(seg), kMiB);
  huge_free(seg);
}

TEST(Huge, ZeroRequestOnAReusedBlockReadsZero) {
  source::configure({256 * kMiB, 60000, 0, 0});
  HugeResult r = huge_alloc(6 * kMiB, 16, false, 0);
  ASSERT_NE(r.p, nullptr);
  std::memset(r.p, 0xee, 6 * kMiB);
  huge_free(source::segment_header(source::segment_base_of(r.p)));
  HugeResult z = huge_alloc(6 * kMiB, 16, true, 0);
  ASSERT_NE(z.p, nullptr);
  EXPECT_EQ(z.p, r.p);  // the cached block came back
  ASSERT_TRUE(z.is_zero);
  const auto* c = static_cast<const unsigned char*>(z.p);
  for (size_t i = 0; i < 6 * kMiB; ++i) ASSERT_EQ(c[i], 0) << i;
  huge_free(source::segment_header(source::segment_base_of(z.p)));
}

TEST(Huge, SeveralOveralignedBlocksLiveTogether) {
  std::vector<std::pair<void*, size_t>> live;
  for (size_t align : {size_t{4} << 20, size_t{8} << 20, size_t{16} << 20, size_t{4} << 20}) {
    void* p = huge_alloc_overaligned(align / 2 + 1, align, 0);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
    EXPECT_EQ(huge_usable_overaligned(p), mpcalloc::base::align_up(align / 2 + 1, mpcalloc::os::page_size()));
    std::memset(p, static_cast<int>(live.size() + 1), align / 2 + 1);
    live.push_back({p, align / 2 + 1});
  }
  void* zero = huge_alloc_overaligned(0, size_t{4} << 20, 0);
  ASSERT_NE(zero, nullptr);
  EXPECT_EQ(huge_usable_overaligned(zero), mpcalloc::os::page_size());
  EXPECT_TRUE(huge_free_overaligned(zero));
  EXPECT_TRUE(huge_free_overaligned(live[1].first));  // from the middle
  EXPECT_EQ(huge_usable_overaligned(live[1].first), 0u);
  for (size_t i : {size_t{0}, size_t{2}, size_t{3}}) {
    const auto* c = static_cast<const unsigned char*>(live[i].first);
    EXPECT_EQ(c[0], i + 1);
    EXPECT_EQ(c[live[i].second - 1], i + 1);
    EXPECT_EQ(huge_usable_overaligned(live[i].first), mpcalloc::base::align_up(live[i].second, mpcalloc::os::page_size()));
    EXPECT_TRUE(huge_free_overaligned(live[i].first));
  }
}

// In checked mode a run's occupancy bitmap (segment base + kCheckBitmapOffset) starts clear
// even when the segment comes dirty from the cache (up to 2 freed segments keep their pages):
// a segment that held medium chunks must not start its small runs with garbage "allocated"
// bits, or a free of a never-allocated block would not be reported as a double free.
TEST(Small, FreshRunStartsWithAClearCheckBitmap) {
  source::configure({256 * kMiB, 60000, 0, 0});
  source::trim_cache();  // no dirty segments cached: the next released one keeps its pages
  MediumState m = make_medium();
  m.quick_off = true;
  std::vector<void*> v;
  while (m.segment_count < 2) {
    void* p = medium_alloc(m, kMediumMax, 16);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xff, kMediumMax);
    v.push_back(p);
  }
  uintptr_t first = source::segment_base_of(v[0]);
  for (void* p : v) {
    if (source::segment_base_of(p) == first) medium_free(m, p);  // whole arena: released
  }
  ASSERT_EQ(m.segment_count, 1u);
  SmallState s = make_small();
  s.check_bitmaps = true;
  ASSERT_NE(small_refill(s, base::small_class_of(32)), nullptr);
  RunMeta* r = s.active[base::small_class_of(32)];
  ASSERT_EQ(run_segment_base(r), first) << "expected the cached segment back";
  const uint8_t* bits = run_check_bitmap(r);
  for (size_t i = 0; i < kCheckBitmapBytes; ++i) ASSERT_EQ(bits[i], 0) << "byte " << i;
}

namespace {
// Pages of [p, p + n) in memory (p page-aligned).
size_t resident_pages(const void* p, size_t n) {
  size_t page = os::page_size();
  std::vector<unsigned char> v(n / page);
  EXPECT_EQ(mincore(const_cast<void*>(p), n, v.data()), 0);
  size_t r = 0;
  for (unsigned char c : v) r += c & 1;
  return r;
}
}  // namespace

TEST(Small, UnusedRunsOfASegmentInUseGiveTheirPagesBackWhenOldEnough) {
  SmallState s = make_small();
  unsigned cls = base::small_class_of(8192);
  // Three runs handed out whole (8 blocks each), every block written.
  RunMeta* run[3] = {};
  std::vector<Block*> blocks[3];
  std::vector<Block*> rest;  // blocks of the fourth run, now active
  int n = 0;
  while (n < 3 || s.active[cls] == run[2]) {
    Block* l = small_refill(s, cls);
    ASSERT_NE(l, nullptr);
    for (Block* next; l != nullptr; l = next) {
      next = l->next;
      RunMeta* r = run_of(l);
      int i = 0;
      while (i < n && run[i] != r) ++i;
      if (i == n && n < 3) run[n++] = r;
      if (i < 3) {
        std::memset(l, 0x5a + i, 8192);
        blocks[i].push_back(l);
      } else {
        rest.push_back(l);
      }
    }
  }
  for (int i = 0; i < 3; ++i) ASSERT_EQ(run[i]->state, kRunFull);
  ASSERT_EQ(run_segment_base(run[0]), run_segment_base(run[2]));
  size_t base_purged = small_purged_bytes();
  // Runs 0 and 1 are freed whole and released; run 2 (full) keeps the segment.
  for (int i = 0; i < 2; ++i) {
    for (Block* b : blocks[i]) small_free_local(s, run[i], b);
  }
  EXPECT_EQ(small_collect(s, false), 2u);
  size_t run_pages = kRunSize / os::page_size();
  ASSERT_EQ(resident_pages(run_start(run[0]), kRunSize), run_pages);
  // Released just now: an age of an hour keeps them.
  EXPECT_EQ(small_purge(s, os::now_ms(), 3600 * 1000, false), 0u);
  // The owner's maintenance reads the clock, then its collection releases runs a tick later:
  // released after `now`, they are young, not 2^32 ms old.
  EXPECT_EQ(small_purge(s, os::now_ms() - 4, 1000, false), 0u);
  EXPECT_EQ(resident_pages(run_start(run[0]), kRunSize), run_pages);
  EXPECT_EQ(resident_pages(run_start(run[1]), kRunSize), run_pages);
  // Age 0: both go (neighbours: one call), the run in use stays whole.
  uint64_t calls = os::counters().madvise_calls;
  EXPECT_EQ(small_purge(s, os::now_ms(), 0, false), 2 * kRunSize);
  EXPECT_EQ(os::counters().madvise_calls - calls, 1u);
  EXPECT_EQ(resident_pages(run_start(run[0]), kRunSize), 0u);
  EXPECT_EQ(resident_pages(run_start(run[1]), kRunSize), 0u);
  EXPECT_EQ(resident_pages(run_start(run[2]), kRunSize), run_pages);
  for (Block* b : blocks[2]) EXPECT_EQ(*reinterpret_cast<unsigned char*>(b) , 0x5c);
  EXPECT_EQ(small_purged_bytes() - base_purged, 2 * kRunSize);
  EXPECT_EQ(small_purge(s, os::now_ms(), 0, false), 0u);  // nothing new
  // A new run takes a purged one back: no longer counted, and its blocks are usable.
  unsigned other = base::small_class_of(64);
  Block* l = small_refill(s, other);
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(run_start(s.active[other]), run_start(run[0]));
  EXPECT_EQ(small_purged_bytes() - base_purged, kRunSize);
  for (Block* b = l; b != nullptr;) {
    Block* next = b->next;
    std::memset(b, 0x11, 64);
    small_free_local(s, s.active[other], b);
    b = next;
  }
  for (Block* b : blocks[2]) small_free_local(s, run[2], b);
  for (Block* b : rest) small_free_local(s, run_of(b), b);
  small_collect(s, true);
  // Every run unused: the segment went back to the source, and so did its purged run.
  EXPECT_EQ(s.segment_count, 0u);
  EXPECT_EQ(small_purged_bytes(), base_purged);
}
