// Layer heap: fast-path reuse, remote frees reclaimed, heap pool, trim.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "heap/heap.h"
#include "heap/heap_internal.h"
#include "source/segment.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

// The active run's list is the class's malloc list: the owner's free pushes on it, so the
// block freed last is the next handed out (warm), and the one before it next.
TEST(Heap, FreedBlockIsReusedFirstOnTheSameThread) {
  void* a = heap::malloc_fast(64);
  void* b = heap::malloc_fast(64);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  // b came from the class's active run (a may be the last block of the run before it).
  ASSERT_EQ(chunks::run_of(b), heap::t_heap->small.active[base::small_class_of(64)]);
  bool same_run = chunks::run_of(a) == chunks::run_of(b);
  heap::free_fast(a);
  heap::free_fast(b);
  void* c = heap::malloc_fast(64);
  EXPECT_EQ(c, b);
  void* d = heap::malloc_fast(64);
  if (same_run) {
    EXPECT_EQ(d, a);
  }
  heap::free_fast(c);
  heap::free_fast(d);
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

namespace {
mpcalloc_stats_t snap() {
  mpcalloc_stats_t s;
  mpcalloc_stats_get(&s);
  return s;
}
}  // namespace

TEST(Heap, ApiFreeThenMallocHandsBackTheBlockJustFreed) {
  void* warm = mpcalloc_malloc(80);  // the thread has a heap and an active run for the class
  void* p = mpcalloc_malloc(80);
  ASSERT_NE(p, nullptr);
  mpcalloc_free(p);
  void* q = mpcalloc_malloc(80);
  EXPECT_EQ(q, p);
  mpcalloc_free(q);
  mpcalloc_free(warm);
}

TEST(Heap, MediumFreeThenMallocReturnsTheSameBlock) {
  void* a = mpcalloc_malloc(100000);
  ASSERT_NE(a, nullptr);
  mpcalloc_free(a);
  EXPECT_EQ(mpcalloc_malloc(100000), a);
  mpcalloc_free(a);
}

TEST(Heap, RemotelyFreedSmallBlockReturnsToItsOwner) {
  void* p = mpcalloc_malloc(200);
  ASSERT_NE(p, nullptr);
  mpcalloc_stats_t s0 = snap();
  std::thread([p] { mpcalloc_free(p); }).join();
  mpcalloc_stats_t s1 = snap();
  EXPECT_EQ(s1.remote_frees, s0.remote_frees + 1);
  EXPECT_EQ(s1.heap_count, s0.heap_count);  // a thread that only frees needs no heap
  // The owner drains its remote list on a slow path and hands the block out again.
  std::vector<void*> got;
  bool back = false;
  for (int i = 0; i < 100000 && !back; ++i) {
    void* q = mpcalloc_malloc(200);
    ASSERT_NE(q, nullptr);
    back = q == p;
    got.push_back(q);
  }
  EXPECT_TRUE(back);
  for (void* q : got) mpcalloc_free(q);
}

TEST(Heap, RemotelyFreedMediumBlockIsTheOwnersNextOfItsSize) {
  void* a = mpcalloc_malloc(60000);
  ASSERT_NE(a, nullptr);
  std::memset(a, 1, 60000);
  mpcalloc_stats_t s0 = snap();
  std::thread([a] { mpcalloc_free(a); }).join();
  EXPECT_EQ(snap().remote_frees, s0.remote_frees + 1);
  EXPECT_EQ(mpcalloc_malloc(60000), a);  // drained before the medium allocation
  mpcalloc_free(a);
}

TEST(Heap, NextThreadGetsTheExitedThreadsHeap) {
  heap::Heap* first = nullptr;
  heap::Heap* second = nullptr;
  std::thread([&] {
    mpcalloc_free(mpcalloc_malloc(32));
    first = heap::t_heap;
  }).join();
  size_t count = snap().heap_count;
  std::thread([&] {
    mpcalloc_free(mpcalloc_malloc(32));
    second = heap::t_heap;
  }).join();
  EXPECT_NE(first, &heap::g_empty_heap);
  EXPECT_EQ(second, first);
  EXPECT_EQ(snap().heap_count, count);
  // Two live threads never share a heap.
  heap::Heap* h[2] = {};
  std::atomic<int> ready{0};
  auto body = [&](int i) {
    mpcalloc_free(mpcalloc_malloc(32));
    h[i] = heap::t_heap;
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
  };
  std::thread a(body, 0), b(body, 1);
  a.join();
  b.join();
  EXPECT_NE(h[0], h[1]);
  // One of them adopts the pooled heap; the other a new heap, or another pooled one (the pool
  // holds more after earlier tests, or after this one in a --gtest_repeat run).
  EXPECT_TRUE(h[0] == first || h[1] == first);
  EXPECT_LE(snap().heap_count, count + 1);
}

TEST(Heap, ThreadFreeingAnExitedThreadsBlocksAdoptsThatHeap) {
  constexpr int kN = 256;
  std::vector<void*> left(kN);
  heap::Heap* owner = nullptr;
  heap::Heap* newest = nullptr;
  // Two threads alive at once, so they have two heaps; the second one ends last, so its heap
  // is the pool's newest, which a new thread takes by default.
  std::atomic<int> step{0};
  std::thread b([&] {
    mpcalloc_free(mpcalloc_malloc(32));
    newest = heap::t_heap;
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
  });
  std::thread a([&] {
    while (step.load() != 1) std::this_thread::yield();
    for (auto& p : left) {
      p = mpcalloc_malloc(96);
      std::memset(p, 0x22, 96);
    }
    owner = heap::t_heap;
  });
  a.join();
  step.store(2);
  b.join();
  ASSERT_NE(owner, newest);
  heap::Heap* plain = nullptr;
  heap::Heap* heir = nullptr;
  mpcalloc_stats_t s0 = snap();
  std::thread([&] {
    // Freeing the ended thread's data first, then allocating: its heap, not the newest.
    mpcalloc_free(left[0]);
    void* q = mpcalloc_malloc(96);
    heir = heap::t_heap;
    for (int i = 1; i < kN; ++i) mpcalloc_free(left[i]);  // now the thread's own blocks
    mpcalloc_free(q);
  }).join();
  mpcalloc_stats_t s1 = snap();
  EXPECT_EQ(heir, owner);
  // Its frees after the first were its own (the first went out in a batch, to itself): with
  // the pool's newest heap, all kN would have been remote frees left for the pooled owner.
  EXPECT_LE(s1.remote_frees - s0.remote_frees, 1u);
  std::thread([&] {
    mpcalloc_free(mpcalloc_malloc(32));
    plain = heap::t_heap;
  }).join();
  EXPECT_EQ(plain, owner);  // the pool's newest again: the heir's thread ended last
  EXPECT_EQ(snap().heap_count, s0.heap_count);  // no heap was made
}

namespace {
// A predecessor: a thread that allocates data's blocks (96 bytes, filled with 0x5a), names its
// heap in `owner`, sets `step` to 1 and ends once `step` is 2 (the caller joins it).
std::thread start_predecessor(std::vector<void*>& data, heap::Heap*& owner, std::atomic<int>& step) {
  return std::thread([&data, &owner, &step] {
    for (auto& q : data) {
      q = mpcalloc_malloc(96);
      std::memset(q, 0x5a, 96);
    }
    owner = heap::t_heap;
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
  });
}
}  // namespace

// The same when the successor starts before its predecessor ends (a thread that hands its data
// on and then exits): at its first malloc the predecessor's heap has a thread still, so it
// gets another; its first full batch of frees to the heap once it is pooled swaps them.
TEST(Heap, SuccessorStartedBeforeItsPredecessorEndedAdoptsItsHeapLater) {
  constexpr int kN = 256;
  std::vector<void*> data(kN);
  heap::Heap* pred = nullptr;
  heap::Heap* early = nullptr;
  heap::Heap* later = nullptr;
  std::atomic<int> step{0};
  std::thread p = start_predecessor(data, pred, step);
  size_t remote_after = 0;
  std::thread s([&] {
    while (step.load() != 1) std::this_thread::yield();
    mpcalloc_free(mpcalloc_malloc(96));  // first malloc while the predecessor lives
    early = heap::t_heap;
    step.store(2);
    while (step.load() != 3) std::this_thread::yield();  // it has ended
    size_t before = snap().remote_frees;
    for (void* q : data) {
      EXPECT_EQ(static_cast<unsigned char*>(q)[95], 0x5a);
      mpcalloc_free(q);
    }
    remote_after = snap().remote_frees - before;
    void* q = mpcalloc_malloc(96);
    later = heap::t_heap;
    mpcalloc_free(q);
  });
  while (step.load() != 2) std::this_thread::yield();
  p.join();
  step.store(3);
  s.join();
  EXPECT_NE(early, pred);
  EXPECT_EQ(later, pred);
  // The first batch went out remote; the rest were the thread's own frees.
  EXPECT_EQ(remote_after, heap::kRemoteBatch);
}

namespace {
// A stand-in for the wait of a first allocation for its predecessor's heap: counts the waits
// and, when a thread is named, lets it end (its exit pools its heap) at the first one.
std::thread* g_ending = nullptr;
std::atomic<int>* g_ending_step = nullptr;
unsigned g_waits = 0;
void wait_for_ending_thread() {
  ++g_waits;
  if (g_ending != nullptr && g_ending->joinable()) {
    g_ending_step->store(2);
    g_ending->join();
  }
}

// Installs wait_for_ending_thread for a scope.
struct PredecessorWaitHook {
  heap::PredecessorWait saved = heap::g_predecessor_wait;
  explicit PredecessorWaitHook(std::thread* ending, std::atomic<int>* step) {
    g_ending = ending;
    g_ending_step = step;
    g_waits = 0;
    heap::g_predecessor_wait = wait_for_ending_thread;
  }
  ~PredecessorWaitHook() {
    heap::g_predecessor_wait = saved;
    g_ending = nullptr;
  }
};
}  // namespace

// The successor's first malloc comes after it freed its predecessor's data, while the
// predecessor is still ending: it waits for the predecessor's exit to pool the heap, and takes
// it (taking the pool's newest instead took the heap another successor was about to want).
TEST(Heap, FirstAllocationWaitsForTheHeapOfTheEndingThreadWhoseDataItFrees) {
  constexpr int kN = 256;
  std::vector<void*> data(kN);
  heap::Heap* pred = nullptr;
  heap::Heap* heir = nullptr;
  std::atomic<int> step{0};
  std::thread p = start_predecessor(data, pred, step);  // ends once the successor waits
  while (step.load() != 1) std::this_thread::yield();
  size_t remote = 0;
  {
    PredecessorWaitHook hook(&p, &step);
    std::thread([&] {
      mpcalloc_free(data[0]);  // held in a batch for the predecessor's heap
      void* q = mpcalloc_malloc(96);
      heir = heap::t_heap;
      size_t before = snap().remote_frees;
      for (int i = 1; i < kN; ++i) {
        EXPECT_EQ(static_cast<unsigned char*>(data[i])[95], 0x5a);
        mpcalloc_free(data[i]);
      }
      remote = snap().remote_frees - before;
      mpcalloc_free(q);
    }).join();
    EXPECT_EQ(g_waits, 1u);
  }
  if (p.joinable()) {
    step.store(2);
    p.join();
  }
  EXPECT_EQ(heir, pred);
  // Its frees of the data were its own (at most the batch held since before flushes out).
  EXPECT_LE(remote, 1u);
}

// When the thread whose block it freed does not end, the first malloc waits a bounded number
// of times and takes another heap.
TEST(Heap, FirstAllocationWaitsBoundedlyForALiveThreadsHeap) {
  heap::Heap* live = nullptr;
  heap::Heap* mine = nullptr;
  void* block = nullptr;
  std::atomic<int> step{0};
  std::thread p([&] {
    block = mpcalloc_malloc(64);
    live = heap::t_heap;
    step.store(1);
    while (step.load() != 3) std::this_thread::yield();
  });
  while (step.load() != 1) std::this_thread::yield();
  {
    PredecessorWaitHook hook(nullptr, nullptr);
    std::thread([&] {
      mpcalloc_free(block);
      void* q = mpcalloc_malloc(64);
      mine = heap::t_heap;
      mpcalloc_free(q);
    }).join();
    EXPECT_EQ(g_waits, heap::kPredecessorWaits);
  }
  step.store(3);
  p.join();
  EXPECT_NE(mine, live);
  EXPECT_NE(mine, &heap::g_empty_heap);
}

namespace {
// Allocates 4 KiB blocks (16 per run) until the calling thread's heap has made more new runs
// than kAdoptYoungRuns since its thread took it: counted, since a heap taken from the pool
// (after other tests in the process) may have runs of that class with room already.
std::vector<void*> grow_out_of_youth() {
  std::vector<void*> own;
  heap::Heap* h = nullptr;
  do {
    own.push_back(mpcalloc_malloc(4096));
    h = heap::t_heap;
  } while (h->small.runs_made - h->small.runs_at_adopt <= heap::kAdoptYoungRuns);
  return own;
}
}  // namespace

// A thread with much data of its own keeps its heap: its frees of that data would all turn
// remote. (It made more runs than kAdoptYoungRuns.)
TEST(Heap, ThreadWithDataOfItsOwnKeepsItsHeap) {
  constexpr int kN = 256;
  std::vector<void*> data(kN);
  heap::Heap* pred = nullptr;
  heap::Heap* mine = nullptr;
  heap::Heap* after = nullptr;
  std::atomic<int> step{0};
  std::thread p = start_predecessor(data, pred, step);
  std::thread t([&] {
    while (step.load() != 1) std::this_thread::yield();
    std::vector<void*> own = grow_out_of_youth();
    mine = heap::t_heap;
    step.store(2);
    while (step.load() != 3) std::this_thread::yield();
    for (void* q : data) mpcalloc_free(q);
    after = heap::t_heap;
    for (void* q : own) mpcalloc_free(q);
  });
  while (step.load() != 2) std::this_thread::yield();
  p.join();
  step.store(3);
  t.join();
  EXPECT_NE(mine, pred);
  EXPECT_EQ(after, mine);
}

namespace {
heap::Heap* owner_of(const void* p) {
  return static_cast<heap::Heap*>(source::segment_owner(source::segment_header(source::segment_base_of(p))));
}
}  // namespace

// A thread that is not young (it keeps its heap) frees an ended thread's data, then takes new
// memory: its heap absorbs the pooled heap, whose segments then name it, and which goes back
// to the pool empty. Its frees of the rest of that data are its own frees, and the memory is
// reused. A block sent to the emptied heap by a thread that read the old owner is forwarded.
TEST(Heap, ThreadTakingNewMemoryAbsorbsThePooledHeapItFreesInto) {
  if (heap::check_enabled()) GTEST_SKIP() << "checked mode keeps heaps apart";
  constexpr int kSmall = 512, kMedium = 12;
  std::vector<void*> data(kSmall), big(kMedium);
  heap::Heap* pred = nullptr;
  heap::Heap* mine = nullptr;
  std::atomic<int> step{0};
  std::thread p([&] {
    for (auto& q : data) {
      q = mpcalloc_malloc(96);
      std::memset(q, 0x3c, 96);
    }
    for (auto& q : big) q = mpcalloc_malloc(64 << 10);
    pred = heap::t_heap;
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
  });
  size_t remote_rest = 0;
  std::thread t([&] {
    while (step.load() != 1) std::this_thread::yield();
    std::vector<void*> own = grow_out_of_youth();  // not young: keeps its heap
    mine = heap::t_heap;
    step.store(2);
    while (step.load() != 3) std::this_thread::yield();  // the predecessor has ended
    for (int i = 0; i < kSmall / 2; ++i) mpcalloc_free(data[i]);  // remote, to a pooled heap
    for (void* q : big) mpcalloc_free(q);
    heap::remote_flush();
    EXPECT_TRUE(pred->in_pool.load());
    // Until the heap makes a new run (its first of that class, unless a heap from the pool
    // had some): the absorption.
    std::vector<void*> fresh;
    uint32_t made = mine->small.runs_made;
    while (mine->small.runs_made == made) fresh.push_back(mpcalloc_malloc(3000));
    EXPECT_EQ(heap::t_heap, mine);
    EXPECT_EQ(owner_of(data[kSmall - 1]), mine);
    size_t before = snap().remote_frees;
    for (int i = kSmall / 2; i < kSmall; ++i) {
      EXPECT_EQ(static_cast<unsigned char*>(data[i])[95], 0x3c);
      mpcalloc_free(data[i]);
    }
    remote_rest = snap().remote_frees - before;
    // The freed medium memory is the heap's now, free chunks and all.
    EXPECT_EQ(owner_of(big[0]), mine);
    EXPECT_GE(mine->medium.segment_count, 1u);
    for (void* q : fresh) mpcalloc_free(q);
    for (void* q : own) mpcalloc_free(q);
  });
  while (step.load() != 2) std::this_thread::yield();
  p.join();
  step.store(3);
  t.join();
  ASSERT_NE(pred, mine);
  EXPECT_EQ(remote_rest, 0u);
  EXPECT_EQ(pred->small.segment_count, 0u);
  EXPECT_EQ(pred->medium.segment_count, 0u);
  EXPECT_EQ(pred->small.all_segments, nullptr);
  // A stale send: a thread that read the old owner sends a block of the absorbed memory to the
  // emptied heap; the drain there passes it on to the segment's owner.
  void* stray = mpcalloc_malloc(96);  // this thread's block, sent as if it were pred's
  heap::Heap* here = heap::t_heap;
  std::thread([&] {
    heap::remote_free_small(pred, stray);
    heap::remote_flush();
  }).join();
  EXPECT_FALSE(pred->remote.empty());
  heap::collect(pred, false);
  EXPECT_TRUE(pred->remote.empty());
  EXPECT_FALSE(here->remote.empty());  // on its way back to its owner
  heap::collect(here, false);
  EXPECT_TRUE(here->remote.empty());
}

// A class that needs a new run first has the heap give back its empty runs (refill in
// route.cpp): a program that frees one size class's blocks and then allocates another's
// reuses that memory instead of growing, without waiting for a periodic collection.
TEST(Heap, NewRunOfOneClassReusesAnotherClasssEmptyRuns) {
  size_t reused = 0, total = 0;
  std::thread([&] {
    std::vector<void*> a;
    for (size_t i = 0; i < 48 * (chunks::kRunSize / 64); ++i) a.push_back(mpcalloc_malloc(64));
    std::set<uintptr_t> a_runs;
    for (void* p : a) a_runs.insert(reinterpret_cast<uintptr_t>(p) >> chunks::kRunShift);
    for (void* p : a) mpcalloc_free(p);  // every run of the class is empty now
    std::vector<void*> b;
    for (size_t i = 0; i < 40 * (chunks::kRunSize / 1024); ++i) b.push_back(mpcalloc_malloc(1000));
    for (void* p : b) reused += a_runs.count(reinterpret_cast<uintptr_t>(p) >> chunks::kRunShift);
    total = b.size();
    for (void* p : b) mpcalloc_free(p);
  }).join();
  // At most kNewRunsBeforeCollect of the 40 new runs come before the collection; the rest
  // take the 48 emptied ones.
  EXPECT_GE(reused, total / 3) << reused << " of " << total << " blocks in the emptied runs";
}

TEST(Heap, BlocksLeftByAnExitedThreadAreFreedAndReused) {
  constexpr int kN = 1000;
  std::vector<void*> left(kN);
  heap::Heap* owner = nullptr;
  std::thread([&] {
    for (auto& p : left) {
      p = mpcalloc_malloc(96);
      std::memset(p, 0x11, 96);
    }
    owner = heap::t_heap;
  }).join();
  heap::remote_flush();  // nothing of this thread's pending in the counts
  mpcalloc_stats_t s0 = snap();
  for (void* p : left) mpcalloc_free(p);  // the owner is gone: its pooled heap receives them
  EXPECT_EQ(snap().remote_frees, s0.remote_frees + kN);
  // Not absorbed by this thread should its next allocation take new memory (absorb_pooled):
  // here the new thread below adopts the heap.
  heap::remote_pooled_target();
  bool reused = false;
  std::thread([&] {
    EXPECT_EQ(heap::t_heap, &heap::g_empty_heap);
    std::vector<void*> got;
    for (int i = 0; i < 20000 && !reused; ++i) {
      void* q = mpcalloc_malloc(96);
      got.push_back(q);
      reused = std::find(left.begin(), left.end(), q) != left.end();
    }
    EXPECT_EQ(heap::t_heap, owner);
    for (void* q : got) mpcalloc_free(q);
  }).join();
  EXPECT_TRUE(reused);
}

TEST(Heap, ApiTrimReportsAndReturnsMemory) {
  std::vector<void*> v;
  for (int i = 0; i < 30000; ++i) v.push_back(mpcalloc_malloc(256));
  void* m = mpcalloc_malloc(500000);
  for (void* p : v) mpcalloc_free(p);
  mpcalloc_free(m);
  mpcalloc_stats_t s0 = snap();
  EXPECT_EQ(mpcalloc_malloc_trim(0), 1);
  mpcalloc_stats_t s1 = snap();
  EXPECT_LT(s1.mapped_bytes, s0.mapped_bytes);
  EXPECT_LT(s1.segment_count, s0.segment_count);
  EXPECT_EQ(s1.cached_bytes, 0u);
  EXPECT_GT(s1.munmap_calls, s0.munmap_calls);
  EXPECT_EQ(mpcalloc_malloc_trim(0), 0);  // nothing left to give back
  // The heap still works after trimming.
  void* p = mpcalloc_malloc(256);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, 256);
  mpcalloc_free(p);
}

TEST(Heap, TrimReachesPooledHeaps) {
  std::thread([] {
    std::vector<void*> v;
    for (int i = 0; i < 20000; ++i) v.push_back(mpcalloc_malloc(512));
    for (void* p : v) mpcalloc_free(p);
  }).join();  // the heap goes to the pool with its runs warm
  mpcalloc_stats_t s0 = snap();
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_t s1 = snap();
  EXPECT_LT(s1.segment_count, s0.segment_count);
  EXPECT_EQ(s1.cached_bytes, 0u);
}

TEST(Heap, ReallocateKeepsContentsAcrossKinds) {
  auto fill = [](void* p, size_t n, unsigned char seed) {
    auto* c = static_cast<unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) c[i] = static_cast<unsigned char>(seed + i * 7);
  };
  auto same = [](const void* p, size_t n, unsigned char seed) {
    const auto* c = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      if (c[i] != static_cast<unsigned char>(seed + i * 7)) return false;
    }
    return true;
  };
  void* p = heap::allocate(100, 16, false);
  ASSERT_NE(p, nullptr);
  fill(p, 100, 3);
  EXPECT_EQ(heap::reallocate(p, 60), p);  // same class neighbourhood: in place
  void* q = heap::reallocate(p, 5000);   // small -> larger class
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(same(q, 60, 3));
  fill(q, 5000, 9);
  void* r = heap::reallocate(q, 200000);  // -> medium
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(same(r, 5000, 9));
  fill(r, 200000, 5);
  void* s = heap::reallocate(r, 3 << 20);  // -> huge
  ASSERT_NE(s, nullptr);
  EXPECT_GE(heap::usable_size(s), size_t{3} << 20);
  EXPECT_TRUE(same(s, 200000, 5));
  fill(s, 3 << 20, 1);
  void* t = heap::reallocate(s, 40 << 20);  // huge grows by mremap
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(same(t, 3 << 20, 1));
  void* u = heap::reallocate(t, 1000);  // huge -> small: copied
  ASSERT_NE(u, nullptr);
  EXPECT_LT(heap::usable_size(u), 2048u);
  EXPECT_TRUE(same(u, 1000, 1));
  heap::deallocate(u, "free");
}

TEST(Heap, MediumReallocGrowsInPlaceIntoAFreeNeighbour) {
  // A fresh heap (new thread) so the medium arena is laid out predictably: a, then free space.
  std::thread([] {
    void* a = heap::allocate(20000, 16, false);
    ASSERT_NE(a, nullptr);
    std::memset(a, 4, 20000);
    void* b = heap::reallocate(a, 300000);
    EXPECT_EQ(b, a);
    const auto* c = static_cast<const unsigned char*>(b);
    for (size_t i = 0; i < 20000; ++i) ASSERT_EQ(c[i], 4);
    heap::deallocate(b, "free");
  }).join();
}

TEST(Heap, ZeroedAllocationsOnDirtyMemoryReadZero) {
  std::vector<void*> v;
  for (size_t n : {size_t{48}, size_t{700}, size_t{6000}, size_t{90000}, size_t{3} << 20}) {
    const int count = n > 100000 ? 6 : 50;
    for (int i = 0; i < count; ++i) {
      void* p = heap::allocate(n, 16, false);
      std::memset(p, 0xff, n);
      v.push_back(p);
    }
    for (void* p : v) heap::deallocate(p, "free");
    v.clear();
    for (int i = 0; i < count; ++i) {
      auto* p = static_cast<unsigned char*>(heap::allocate(n, 16, true));
      ASSERT_NE(p, nullptr);
      for (size_t k = 0; k < n; k += (n > 100000 ? 4093 : 1)) ASSERT_EQ(p[k], 0) << n << " @" << k;
      ASSERT_EQ(p[n - 1], 0);
      v.push_back(p);
    }
    for (void* p : v) heap::deallocate(p, "free");
    v.clear();
  }
}

TEST(Heap, AlignedAllocationsOfEveryKind) {
  std::vector<void*> v;
  for (size_t align : {size_t{32}, size_t{64}, size_t{4096}, size_t{65536}, size_t{1} << 21,
                       size_t{1} << 22, size_t{1} << 23}) {
    for (size_t size : {size_t{1}, size_t{100}, size_t{5000}, size_t{200000}, size_t{2} << 20}) {
      void* p = heap::allocate(size, align, false);
      ASSERT_NE(p, nullptr) << size << " " << align;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << size << " " << align;
      EXPECT_GE(heap::usable_size(p), size);
      std::memset(p, 0x42, size);
      v.push_back(p);
    }
  }
  for (void* p : v) {
    EXPECT_EQ(*static_cast<unsigned char*>(p), 0x42);
    heap::deallocate(p, "free");
  }
}

TEST(Heap, CrossThreadHandoffKeepsContents) {
  constexpr int kN = 20000;
  std::vector<unsigned char*> blocks(kN);
  mpcalloc_stats_t s0 = snap();
  std::thread producer([&] {
    for (int i = 0; i < kN; ++i) {
      size_t n = 16 + static_cast<size_t>(i % 97) * 24;
      blocks[static_cast<size_t>(i)] = static_cast<unsigned char*>(mpcalloc_malloc(n));
      std::memset(blocks[static_cast<size_t>(i)], i & 0xff, n);
    }
  });
  producer.join();
  std::thread consumer([&] {
    for (int i = 0; i < kN; ++i) {
      size_t n = 16 + static_cast<size_t>(i % 97) * 24;
      unsigned char* b = blocks[static_cast<size_t>(i)];
      ASSERT_EQ(b[0], i & 0xff);
      ASSERT_EQ(b[n - 1], i & 0xff);
      mpcalloc_free(b);
    }
  });
  consumer.join();
  EXPECT_GE(snap().remote_frees - s0.remote_frees, static_cast<size_t>(kN));
}

namespace {
// Blocks on a heap's remote list, owner only (the list is taken and put back as it was).
size_t remote_count(heap::Heap* h) {
  base::MpscNode* first = h->remote.take_all();
  if (first == nullptr) return 0;
  size_t n = 1;
  base::MpscNode* last = first;
  for (; last->next != nullptr; last = last->next) ++n;
  h->remote.push_chain(first, last);
  return n;
}

// Mallocs of `size` until every block of `blocks` (freed, drained back to this thread's heap)
// has been handed out again, then frees what it got.
void expect_every_block_comes_back(const std::vector<void*>& blocks, size_t size) {
  std::set<void*> want(blocks.begin(), blocks.end());
  std::vector<void*> got;
  for (int i = 0; i < 100000 && !want.empty(); ++i) {
    void* p = mpcalloc_malloc(size);
    want.erase(p);
    got.push_back(p);
  }
  EXPECT_TRUE(want.empty());
  for (void* p : got) mpcalloc_free(p);
}
}  // namespace

// A thread freeing another heap's small blocks sends them in batches: fewer than a batch wait
// in the thread (seen in its own stats), a full batch goes out with one push, the rest goes at
// malloc_trim or when the thread ends, and the owner gets every block back.
TEST(Heap, RemoteFreesTravelInBatchesAndAllArrive) {
  constexpr size_t kBatch = heap::kRemoteBatch;
  std::vector<void*> blocks;
  for (size_t i = 0; i < kBatch + 8; ++i) blocks.push_back(mpcalloc_malloc(64));
  heap::Heap* me = heap::t_heap;
  heap::drain_remote(me);  // start from an empty list
  heap::remote_flush();    // and without blocks of this thread's in the count below
  size_t at_batch_minus_one = 99, at_batch = 0, pending = 0, after_trim = 0;
  size_t remote_seen = 0, remote_before = snap().remote_frees;
  std::thread([&] {
    for (size_t i = 0; i + 1 < kBatch; ++i) mpcalloc_free(blocks[i]);
    at_batch_minus_one = remote_count(me);  // the owner is waiting in join: safe to look
    remote_seen = snap().remote_frees - remote_before;
    mpcalloc_free(blocks[kBatch - 1]);
    at_batch = remote_count(me);
    for (size_t i = kBatch; i < kBatch + 3; ++i) mpcalloc_free(blocks[i]);
    pending = heap::remote_pending();
    mpcalloc_malloc_trim(0);
    after_trim = remote_count(me);
    for (size_t i = kBatch + 3; i < blocks.size(); ++i) mpcalloc_free(blocks[i]);
  }).join();
  EXPECT_EQ(at_batch_minus_one, 0u);
  EXPECT_EQ(remote_seen, kBatch - 1);  // a thread's stats count what it holds
  EXPECT_EQ(at_batch, kBatch);
  EXPECT_EQ(pending, 3u);
  EXPECT_EQ(after_trim, kBatch + 3);
  EXPECT_EQ(remote_count(me), blocks.size());  // the last five went at thread exit
  EXPECT_EQ(snap().remote_frees - remote_before, blocks.size());
  // Drained, they are the owner's again: every one comes back before any new memory.
  heap::drain_remote(me);
  expect_every_block_comes_back(blocks, 64);
}

// A batch's blocks reach the owner as a chain in which each block also names the one
// kRemoteSkip places further down (what the drain prefetches), and the drain gives back every
// block of the chain.
TEST(Heap, RemoteBatchBlocksNameTheBlockFourFurtherDown) {
  constexpr size_t kBatch = heap::kRemoteBatch;
  std::vector<void*> blocks;
  for (size_t i = 0; i < kBatch; ++i) blocks.push_back(mpcalloc_malloc(16));
  heap::Heap* me = heap::t_heap;
  heap::drain_remote(me);  // start from an empty list
  std::thread([&] {
    for (void* p : blocks) mpcalloc_free(p);  // one full batch: sent at the last free
  }).join();
  std::vector<base::MpscNode*> chain;
  base::MpscNode* first = me->remote.take_all();
  for (base::MpscNode* n = first; n != nullptr; n = n->next) chain.push_back(n);
  ASSERT_EQ(chain.size(), kBatch);
  EXPECT_EQ(chain.front(), blocks.back());  // newest first
  for (size_t i = 0; i + heap::kRemoteSkip < chain.size(); ++i) {
    EXPECT_EQ(reinterpret_cast<heap::RemoteNode*>(chain[i])->skip, chain[i + heap::kRemoteSkip])
        << "block " << i;
  }
  me->remote.push_chain(first, chain.back());
  heap::drain_remote(me);
  expect_every_block_comes_back(blocks, 16);
}

// Blocks aligned to a segment or more have no header but are mapped through the source, so
// mapped_bytes, huge_count and huge_bytes (and mallinfo2, stats print) include them.
TEST(Heap, OveralignedHugeBlocksShowInStats) {
  mpcalloc_stats_t s0 = snap();
  void* p = heap::allocate(size_t{64} << 20, size_t{4} << 20, false);
  ASSERT_NE(p, nullptr);
  mpcalloc_stats_t s1 = snap();
  EXPECT_GE(s1.mapped_bytes - s0.mapped_bytes, size_t{64} << 20);
  EXPECT_EQ(s1.huge_count, s0.huge_count + 1);
  EXPECT_GE(s1.huge_bytes - s0.huge_bytes, size_t{64} << 20);
  heap::deallocate(p, "free");
  mpcalloc_stats_t s2 = snap();
  EXPECT_EQ(s2.huge_count, s0.huge_count);
  EXPECT_EQ(s2.mapped_bytes, s0.mapped_bytes);
}
