// Layer arch: the thread key and the free fast path's hit, for the native architecture (the
// hand-written x86-64 or aarch64 code) and the portable C++ fallback, on a fake run table.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <sys/mman.h>
#include <thread>
#include <vector>

#include "arch/arch.h"

using namespace mpcalloc::arch;

namespace {

// The heap's layout (4 MiB segments, 64 KiB runs, local free lists at 512) and another one,
// so that no number is built into an implementation by accident.
constexpr RunTableLayout kHeapLike{22, 16, 512};
constexpr RunTableLayout kOther{20, 14, 1024};
constexpr size_t kSegment = size_t{1} << 22;

// A 4 MiB-aligned read/write mapping standing for a segment; fails the test if mmap does.
class FakeSegment {
 public:
  FakeSegment() {
    raw_ = mmap(nullptr, 2 * kSegment, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw_ == MAP_FAILED) raw_ = nullptr;
    base_ = (reinterpret_cast<uintptr_t>(raw_) + kSegment - 1) & ~(kSegment - 1);
  }
  ~FakeSegment() {
    if (raw_ != nullptr) munmap(raw_, 2 * kSegment);
  }
  FakeSegment(const FakeSegment&) = delete;
  FakeSegment& operator=(const FakeSegment&) = delete;
  bool ok() const { return raw_ != nullptr; }
  uintptr_t base() const { return base_; }
  uintptr_t& word(size_t offset) { return *reinterpret_cast<uintptr_t*>(base_ + offset); }

 private:
  void* raw_;
  uintptr_t base_;
};

template <class A>
class ArchImpl : public ::testing::Test {};
using Impls = ::testing::Types<Native, Generic>;
TYPED_TEST_SUITE(ArchImpl, Impls);

template <class A>
const void* key_of_new_thread() {
  const void* k = nullptr;
  std::thread([&] { k = A::thread_key(); }).join();
  return k;
}

}  // namespace

TYPED_TEST(ArchImpl, ThreadKeyIsStableEvenAndUniqueAmongLiveThreads) {
  using A = TypeParam;
  const void* mine = A::thread_key();
  ASSERT_NE(mine, nullptr);
  EXPECT_EQ(A::thread_key(), mine);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mine) & 1, 0u) << "odd keys are the heap's slow keys";
  constexpr int kThreads = 8;
  std::vector<const void*> keys(kThreads);
  std::atomic<int> arrived{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      keys[i] = A::thread_key();
      // Everyone stays alive until all have read their key: live keys must differ.
      arrived.fetch_add(1);
      while (arrived.load() < kThreads) std::this_thread::yield();
      EXPECT_EQ(A::thread_key(), keys[i]);
    });
  }
  for (auto& t : threads) t.join();
  std::set<const void*> distinct(keys.begin(), keys.end());
  distinct.insert(mine);
  EXPECT_EQ(distinct.size(), size_t{kThreads + 1});
}

TYPED_TEST(ArchImpl, HitPushesOnTheOwnRunsLocalFreeList) {
  using A = TypeParam;
  FakeSegment seg;
  ASSERT_TRUE(seg.ok());
  const uintptr_t key = reinterpret_cast<uintptr_t>(A::thread_key());
  for (unsigned run : {1u, 2u, 37u, 63u}) {
    for (uintptr_t at : {uintptr_t{0}, uintptr_t{4096}, (uintptr_t{1} << 16) - 16}) {
      seg.word(run * 8) = key;
      seg.word(512 + run * 8) = 0x5150;  // the list so far
      uintptr_t block = seg.base() + (uintptr_t{run} << 16) + at;
      *reinterpret_cast<uintptr_t*>(block) = 0xdead;
      ASSERT_TRUE(A::template free_to_own_run<kHeapLike>(reinterpret_cast<void*>(block)))
          << "run " << run << " +" << at;
      EXPECT_EQ(*reinterpret_cast<uintptr_t*>(block), 0x5150u) << "block links to the old head";
      EXPECT_EQ(seg.word(512 + run * 8), block) << "block is the new head";
      EXPECT_EQ(seg.word(run * 8), key) << "owner key unchanged";
      seg.word(run * 8) = 0;
      seg.word(512 + run * 8) = 0;
    }
  }
  // Nothing else in the table was written.
  for (size_t off = 0; off < 4096; off += 8) ASSERT_EQ(seg.word(off), 0u) << off;
}

TYPED_TEST(ArchImpl, SuccessiveHitsBuildAList) {
  using A = TypeParam;
  FakeSegment seg;
  ASSERT_TRUE(seg.ok());
  seg.word(5 * 8) = reinterpret_cast<uintptr_t>(A::thread_key());
  uintptr_t run = seg.base() + (uintptr_t{5} << 16);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(A::template free_to_own_run<kHeapLike>(reinterpret_cast<void*>(run + 64 * i)));
  }
  uintptr_t p = seg.word(512 + 5 * 8);
  for (int i = 3; i >= 0; --i) {
    ASSERT_EQ(p, run + 64 * i);
    p = *reinterpret_cast<uintptr_t*>(p);
  }
  EXPECT_EQ(p, 0u);
}

TYPED_TEST(ArchImpl, MissWhenAnotherKeyOwnsTheRun) {
  using A = TypeParam;
  FakeSegment seg;
  ASSERT_TRUE(seg.ok());
  const uintptr_t mine = reinterpret_cast<uintptr_t>(A::thread_key());
  const uintptr_t other = reinterpret_cast<uintptr_t>(key_of_new_thread<A>());
  uintptr_t block = seg.base() + (uintptr_t{9} << 16) + 256;
  // Another thread's key, the slow key (odd), no owner, and the owner's key one run over.
  for (uintptr_t owner : {other, mine + 1, uintptr_t{0}}) {
    seg.word(9 * 8) = owner;
    *reinterpret_cast<uintptr_t*>(block) = 0xdead;
    EXPECT_FALSE(A::template free_to_own_run<kHeapLike>(reinterpret_cast<void*>(block))) << owner;
    EXPECT_EQ(*reinterpret_cast<uintptr_t*>(block), 0xdeadu);
    EXPECT_EQ(seg.word(512 + 9 * 8), 0u);
  }
  seg.word(9 * 8) = 0;
  seg.word(10 * 8) = mine;
  EXPECT_FALSE(A::template free_to_own_run<kHeapLike>(reinterpret_cast<void*>(block)));
  // Freed from a thread that does not own the run.
  seg.word(9 * 8) = mine;
  bool hit = true;
  std::thread([&] { hit = A::template free_to_own_run<kHeapLike>(reinterpret_cast<void*>(block)); }).join();
  EXPECT_FALSE(hit);
  EXPECT_EQ(seg.word(512 + 9 * 8), 0u);
}

TYPED_TEST(ArchImpl, NullAndSegmentAlignedPointersMissWithoutAnyRead) {
  using A = TypeParam;
  EXPECT_FALSE(A::template free_to_own_run<kHeapLike>(nullptr));
  // A segment-aligned pointer whose "run table" cannot be read: any access would fault.
  FakeSegment seg;
  ASSERT_TRUE(seg.ok());
  ASSERT_EQ(mprotect(reinterpret_cast<void*>(seg.base()), 4096, PROT_NONE), 0);
  EXPECT_FALSE(A::template free_to_own_run<kHeapLike>(reinterpret_cast<void*>(seg.base())));
  EXPECT_FALSE(A::template free_to_own_run<kOther>(reinterpret_cast<void*>(seg.base() + (size_t{1} << 20))));
}

TYPED_TEST(ArchImpl, TheLayoutIsAParameter) {
  using A = TypeParam;
  FakeSegment seg;
  ASSERT_TRUE(seg.ok());
  // kOther: 1 MiB segments of 16 KiB runs; the second 1 MiB of the mapping is its segment.
  uintptr_t s = seg.base() + (size_t{1} << 20);
  auto word = [&](size_t off) -> uintptr_t& { return *reinterpret_cast<uintptr_t*>(s + off); };
  word(5 * 8) = reinterpret_cast<uintptr_t>(A::thread_key());
  uintptr_t block = s + 5 * (size_t{1} << 14) + 48;
  ASSERT_TRUE(A::template free_to_own_run<kOther>(reinterpret_cast<void*>(block)));
  EXPECT_EQ(word(1024 + 5 * 8), block);
  EXPECT_EQ(word(512 + 5 * 8), 0u);
  // The same pointer under the heap's layout is in run 20 of a different segment (no owner).
  EXPECT_FALSE(A::template free_to_own_run<kHeapLike>(reinterpret_cast<void*>(block)));
}

TEST(Arch, NativeAgreesWithTheCxxVersionEverywhereInASegment) {
  // The same table (each implementation's own key in the same runs) and the same pointers:
  // the same answers and the same lists, at run boundaries and at pseudo-random offsets.
  FakeSegment a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  for (unsigned run = 0; run < 64; run += 3) {
    a.word(run * 8) = reinterpret_cast<uintptr_t>(Native::thread_key());
    b.word(run * 8) = reinterpret_cast<uintptr_t>(Generic::thread_key());
  }
  std::vector<uintptr_t> offsets = {0, 8, (uintptr_t{1} << 16) - 8, uintptr_t{1} << 16,
                                    (uintptr_t{3} << 16) + 16, kSegment - 16};
  uint64_t x = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    offsets.push_back(x % kSegment & ~uintptr_t{15});
  }
  int hits = 0;
  for (uintptr_t off : offsets) {
    if (off < 4096) off = off == 0 ? 0 : 4096 + off;  // not inside the table itself
    bool ha = Native::free_to_own_run<kHeapLike>(reinterpret_cast<void*>(a.base() + off));
    bool hb = Generic::free_to_own_run<kHeapLike>(reinterpret_cast<void*>(b.base() + off));
    ASSERT_EQ(ha, hb) << "offset " << off;
    hits += ha;
  }
  EXPECT_GT(hits, 100);
  for (unsigned run = 0; run < 64; ++run) {
    uintptr_t pa = a.word(512 + run * 8), pb = b.word(512 + run * 8);
    while (pa != 0 && pb != 0) {
      ASSERT_EQ(pa - a.base(), pb - b.base()) << "run " << run;
      pa = *reinterpret_cast<uintptr_t*>(pa);
      pb = *reinterpret_cast<uintptr_t*>(pb);
    }
    ASSERT_EQ(pa == 0, pb == 0) << "run " << run;
  }
}
