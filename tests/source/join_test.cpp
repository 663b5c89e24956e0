// Layer source: cached huge blocks joined into one for a request none of them fits (their
// pages moved, not faulted in again). Tests share one process's source: they assert on deltas
// and trim first.
#include <gtest/gtest.h>

#include <cstring>
#include <sys/mman.h>
#include <vector>

#include "os/os_memory.h"
#include "source/block_source.h"
#include "source/mappings.h"
#include "source/place.h"

using namespace mpcalloc::source;

namespace {
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kPage = 4096;

void reset() {
  configure({256 * kMiB, 60000, 0, 0});
  trim_cache();
}

unsigned char mark(int piece, size_t page) { return static_cast<unsigned char>(piece * 37 + page + 1); }

// Writes a mark on every page of a block past its header page.
void fill(SegmentHeader* h, int piece) {
  auto* p = reinterpret_cast<unsigned char*>(segment_base(h));
  for (size_t off = 2 * kPage; off < h->map_size; off += kPage) p[off] = mark(piece, off / kPage);
}

// Whether [p, p + size) holds the marks `piece` wrote from its own page 2 on.
bool holds(const unsigned char* p, size_t size, int piece) {
  for (size_t off = 2 * kPage; off < size; off += kPage) {
    if (p[off] != mark(piece, off / kPage)) return false;
  }
  return true;
}

size_t resident_pages(uintptr_t base, size_t size) {
  std::vector<unsigned char> v(size / kPage);
  if (mincore(reinterpret_cast<void*>(base), size, v.data()) != 0) return 0;
  size_t n = 0;
  for (unsigned char c : v) n += c & 1;
  return n;
}

// Cached blocks of the given sizes, kept apart by blocks in use (so they do not merge); the
// fences are released by the destructor. The kernel may place a piece right next to an
// earlier one, fence or not: such a block is kept as one more fence, and another one mapped.
struct Pieces {
  std::vector<SegmentHeader*> cached, fences;
  std::vector<uintptr_t> bases;
  bool touches_a_piece(SegmentHeader* h) const {
    uintptr_t b = segment_base(h);
    for (SegmentHeader* c : cached) {
      uintptr_t cb = segment_base(c);
      if (cb + c->map_size == b || b + h->map_size == cb) return true;
    }
    return false;
  }
  explicit Pieces(std::initializer_list<size_t> sizes, bool write = true) {
    int i = 0;
    for (size_t s : sizes) {
      SegmentHeader* h = acquire_huge(s, false, 0);
      while (h != nullptr && touches_a_piece(h)) {
        fences.push_back(h);
        h = acquire_huge(s, false, 0);
      }
      SegmentHeader* f = acquire_huge(4 * kMiB, false, 0);
      EXPECT_NE(h, nullptr);
      EXPECT_NE(f, nullptr);
      if (write) fill(h, i);
      cached.push_back(h);
      fences.push_back(f);
      bases.push_back(segment_base(h));
      ++i;
    }
    for (SegmentHeader* h : cached) release_huge(h);
  }
  ~Pieces() {
    for (SegmentHeader* f : fences) release_huge(f);
  }
};

}  // namespace

// Cached 12, 10 and 6 MiB apart from each other; a 22 MiB request takes the two largest: their
// pages move into one block, nothing is mapped or faulted in, the 6 MiB block stays cached.
TEST(Join, CachedPiecesBecomeOneBlockWithTheirPages) {
  reset();
  SourceStats s0 = stats();
  {
    Pieces pieces({12 * kMiB, 10 * kMiB, 6 * kMiB});
    SourceStats s1 = stats();
    ASSERT_EQ(s1.cached_bytes, 28 * kMiB);
    uint64_t mremaps = mpcalloc::os::counters().mremap_calls;
    SegmentHeader* g = acquire_huge(22 * kMiB, false, 0);
    ASSERT_NE(g, nullptr);
    uintptr_t b = segment_base(g);
    EXPECT_EQ(b % kSegmentSize, 0u);
    EXPECT_EQ(g->map_size, 22 * kMiB);
    EXPECT_EQ(g->kind, SegmentKind::kHuge);
    EXPECT_EQ(g->mappings, 2);
    EXPECT_GT(mpcalloc::os::counters().mremap_calls, mremaps);
    SourceStats s2 = stats();
    EXPECT_EQ(s2.mapped_bytes, s1.mapped_bytes) << "nothing mapped anew";
    EXPECT_EQ(s2.cached_bytes, 6 * kMiB);
    EXPECT_EQ(s2.huge_bytes, s1.huge_bytes + 22 * kMiB);
    EXPECT_TRUE(is_registered(b));
    EXPECT_FALSE(is_registered(pieces.bases[1])) << "the moved piece's old range is not ours";
    EXPECT_TRUE(is_registered(pieces.bases[2]));
    // Every page the pieces wrote is there before anything touches it, with what they held.
    EXPECT_EQ(resident_pages(b + 2 * kPage, 12 * kMiB - 2 * kPage), 12 * kMiB / kPage - 2);
    EXPECT_EQ(resident_pages(b + 12 * kMiB + 2 * kPage, 10 * kMiB - 2 * kPage), 10 * kMiB / kPage - 2);
    auto* p = reinterpret_cast<const unsigned char*>(b);
    EXPECT_TRUE(holds(p, 12 * kMiB, 0));
    EXPECT_TRUE(holds(p + 12 * kMiB, 10 * kMiB, 1));
    // Freed, it is one cached block: the same request takes it whole.
    release_huge(g);
    SegmentHeader* again = acquire_huge(22 * kMiB, false, 0);
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(segment_base(again), b);
    EXPECT_EQ(stats().mapped_bytes, s1.mapped_bytes);
    release_huge(again);
  }
  reset();
  EXPECT_EQ(stats().mapped_bytes, s0.mapped_bytes);
}

// What the pieces do not cover is fresh memory: mapped, charged, writable.
TEST(Join, FreshMemoryCoversWhatThePiecesDoNot) {
  reset();
  {
    Pieces pieces({8 * kMiB, 6 * kMiB});
    SourceStats s1 = stats();
    SegmentHeader* g = acquire_huge(20 * kMiB, false, 0);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->map_size, 20 * kMiB);
    EXPECT_EQ(g->mappings, 3);
    SourceStats s2 = stats();
    EXPECT_EQ(s2.mapped_bytes, s1.mapped_bytes + 6 * kMiB);
    EXPECT_EQ(s2.cached_bytes, 0u);
    auto* p = reinterpret_cast<unsigned char*>(segment_base(g));
    EXPECT_TRUE(holds(p, 8 * kMiB, 0));
    EXPECT_TRUE(holds(p + 8 * kMiB, 6 * kMiB, 1));
    for (size_t off = 14 * kMiB; off < 20 * kMiB; off += kPage) ASSERT_EQ(p[off], 0);
    std::memset(p + 8192, 0x5a, 20 * kMiB - 8192);
    release_huge(g);
  }
  reset();
}

// The last piece gives only the tail the request still needs: the block is as large as asked,
// and the piece's head stays cached where it was, with its data, for the next request.
TEST(Join, LastPieceGivesOnlyTheTailTheRequestNeeds) {
  reset();
  {
    Pieces pieces({12 * kMiB, 10 * kMiB});
    SourceStats s1 = stats();
    SegmentHeader* g = acquire_huge(16 * kMiB, false, 0);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->map_size, 16 * kMiB) << "no larger than asked";
    EXPECT_EQ(g->mappings, 2);
    SourceStats s2 = stats();
    EXPECT_EQ(s2.mapped_bytes, s1.mapped_bytes) << "nothing mapped anew";
    EXPECT_EQ(s2.cached_bytes, 6 * kMiB);
    EXPECT_EQ(s2.huge_bytes, s1.huge_bytes + 16 * kMiB);
    EXPECT_TRUE(is_registered(pieces.bases[1])) << "the head stays where it was";
    uintptr_t b = segment_base(g);
    auto* p = reinterpret_cast<const unsigned char*>(b);
    EXPECT_TRUE(holds(p, 12 * kMiB, 0));
    // The second piece's pages from 6 MiB on, resident and with what they held.
    EXPECT_EQ(resident_pages(b + 12 * kMiB, 4 * kMiB), 4 * kMiB / kPage);
    for (size_t off = 0; off < 4 * kMiB; off += kPage) {
      ASSERT_EQ(p[12 * kMiB + off], mark(1, (6 * kMiB + off) / kPage)) << "offset " << off;
    }
    // The head is a cached block of 6 MiB: the best fit for a request of that size.
    SegmentHeader* h = acquire_huge(6 * kMiB, false, 0);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(segment_base(h), pieces.bases[1]);
    EXPECT_EQ(h->map_size, 6 * kMiB);
    EXPECT_TRUE(holds(reinterpret_cast<const unsigned char*>(pieces.bases[1]), 6 * kMiB, 1));
    EXPECT_EQ(stats().mapped_bytes, s1.mapped_bytes);
    release_huge(h);
    release_huge(g);
  }
  reset();
}

// A request that wants zeroed memory gets it, the moved pieces' old headers included.
TEST(Join, WantZeroReadsZeroEverywhere) {
  reset();
  for (bool clean : {false, true}) {
    reset();
    Pieces pieces({12 * kMiB, 10 * kMiB}, !clean);
    if (clean) {
      // Never written: their pages read zero past the header, so they may say so, and the
      // join keeps them (no page dropped) but must clear the header the second one brings.
      for (SegmentHeader* h : pieces.cached) h->is_zero = true;
    }
    SegmentHeader* g = acquire_huge(22 * kMiB, true, 0);
    ASSERT_NE(g, nullptr);
    EXPECT_TRUE(g->is_zero);
    auto* p = reinterpret_cast<const unsigned char*>(segment_base(g));
    size_t from = kRunTableBytes + sizeof(SegmentHeader) + 64;  // past the block's own headers
    for (size_t i = from; i < 22 * kMiB; i += 8) {
      uint64_t v;
      std::memcpy(&v, p + i, 8);
      ASSERT_EQ(v, 0u) << "clean " << clean << " offset " << i;
    }
    release_huge(g);
  }
  reset();
}

// A joined block in use is resized mapping-aware: a shrink past a mapping's start unmaps the
// tail; growth works on its last mapping (in place) or, once it is one mapping, by moving.
TEST(Join, BlockOfSeveralMappingsShrinksAndGrows) {
  reset();
  {
    Pieces pieces({12 * kMiB, 10 * kMiB});
    SegmentHeader* g = acquire_huge(22 * kMiB, false, 0);
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(g->mappings, 2);
    uintptr_t b = segment_base(g);
    SourceStats s1 = stats();
    SegmentHeader* s = resize_huge(g, 16 * kMiB);  // inside the second mapping
    ASSERT_EQ(s, g);
    EXPECT_EQ(s->mappings, 2);
    EXPECT_EQ(stats().mapped_bytes, s1.mapped_bytes - 6 * kMiB);
    s = resize_huge(s, 8 * kMiB);  // before the second mapping's start
    ASSERT_EQ(s, g);
    EXPECT_EQ(s->mappings, 1);
    EXPECT_EQ(s->map_size, 8 * kMiB);
    EXPECT_EQ(stats().mapped_bytes, s1.mapped_bytes - 14 * kMiB);
    EXPECT_TRUE(holds(reinterpret_cast<const unsigned char*>(b), 8 * kMiB, 0));
    SegmentHeader* grown = resize_huge(s, 30 * kMiB);  // one mapping: in place or moved
    ASSERT_NE(grown, nullptr);
    EXPECT_EQ(grown->map_size, 30 * kMiB);
    EXPECT_TRUE(holds(reinterpret_cast<const unsigned char*>(segment_base(grown)), 8 * kMiB, 0));
    EXPECT_EQ(stats().mapped_bytes, s1.mapped_bytes + 8 * kMiB);
    release_huge(grown);
  }
  reset();
}

// When the kernel refuses a step, nothing is corrupted: pieces whose pages had not moved are
// cached again, a moved one is given up, and the request gets a fresh mapping.
TEST(Join, RefusedStepsLeaveEveryPieceCachedOrReleased) {
  // The join's calls: reserve (1), move the first piece (2), move the second (3); the second
  // moves whole (22 MiB asked) or gives its tail (16 MiB asked).
  for (size_t want : {22 * kMiB, 16 * kMiB}) {
    for (unsigned long step : {1ul, 2ul, 3ul}) {
      reset();  // the last round's fences too
      Pieces pieces({12 * kMiB, 10 * kMiB});
      SourceStats s1 = stats();
      mpcalloc::os::fail_after(step);
      SegmentHeader* g = acquire_huge(want, false, 0);
      mpcalloc::os::fail_after(0);
      ASSERT_NE(g, nullptr) << "step " << step;
      EXPECT_EQ(g->map_size, want);
      EXPECT_EQ(g->mappings, 1) << "a fresh mapping";
      SourceStats s2 = stats();
      size_t lost = step == 3 ? 12 * kMiB : 0;  // the first piece moved, then the join gave up
      EXPECT_EQ(s2.cached_bytes, 22 * kMiB - lost) << "want " << want << " step " << step;
      EXPECT_EQ(s2.mapped_bytes, s1.mapped_bytes + want - lost) << "want " << want << " step " << step;
      EXPECT_EQ(is_registered(pieces.bases[0]), step != 3);
      EXPECT_TRUE(is_registered(pieces.bases[1]));
      std::memset(reinterpret_cast<void*>(segment_base(g) + 8192), 1, want - 8192);
      release_huge(g);
    }
  }
  reset();
}

// The tail the last piece gives may span several of its mappings, moved one by one. When the
// kernel refuses the second, the part already moved and the rest of the tail are given up,
// and the piece's head is cached again with its data.
TEST(Join, RefusedMoveInsideTheLastTailKeepsTheHead) {
  // The join's calls: reserve (1), move the first piece (2), the tail's two parts (3, 4).
  for (unsigned long step : {0ul, 3ul, 4ul}) {
    reset();
    Pieces pieces({14 * kMiB, 12 * kMiB});
    // The second piece's records list two mappings (one more than the kernel has costs only
    // a call more): its 8 MiB tail then moves in two parts, 4-6 and 6-12 MiB.
    mappings_add(pieces.cached[1], 6 * kMiB, new_mapping_id());
    SourceStats s1 = stats();
    mpcalloc::os::fail_after(step);
    SegmentHeader* g = acquire_huge(22 * kMiB, false, 0);
    mpcalloc::os::fail_after(0);
    ASSERT_NE(g, nullptr) << "step " << step;
    EXPECT_EQ(g->map_size, 22 * kMiB);
    SourceStats s2 = stats();
    EXPECT_TRUE(is_registered(pieces.bases[1]));
    size_t lost = step == 0 ? 0 : step == 3 ? 14 * kMiB : 22 * kMiB;
    size_t cached = step == 3 ? 12 * kMiB : 4 * kMiB;
    size_t fresh = step == 0 ? 0 : 22 * kMiB;
    EXPECT_EQ(g->mappings, step == 0 ? 3 : 1) << "step " << step;
    EXPECT_EQ(s2.cached_bytes, cached) << "step " << step;
    EXPECT_EQ(s2.mapped_bytes, s1.mapped_bytes + fresh - lost) << "step " << step;
    if (step == 0) {
      auto* p = reinterpret_cast<const unsigned char*>(segment_base(g));
      EXPECT_TRUE(holds(p, 14 * kMiB, 0));
      for (size_t off = 0; off < 8 * kMiB; off += kPage) {
        ASSERT_EQ(p[14 * kMiB + off], mark(1, (4 * kMiB + off) / kPage)) << "offset " << off;
      }
    }
    EXPECT_TRUE(holds(reinterpret_cast<const unsigned char*>(pieces.bases[1]), 4 * kMiB, 1));
    SegmentHeader* h = acquire_huge(4 * kMiB, false, 0);  // the head, the best fit
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(segment_base(h), pieces.bases[1]) << "step " << step;
    release_huge(h);
    std::memset(reinterpret_cast<void*>(segment_base(g) + 8192), 1, 22 * kMiB - 8192);
    release_huge(g);
  }
  reset();
}
