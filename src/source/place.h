// A place is where memory lives: one NUMA node, first-touch memory of unbound threads, or huge
// blocks interleaved over the nodes. Each has its own cache of free blocks (under its lock and
// byte budget) and its own accounting, so memory never changes place by being recycled.
// Layer source (internal to the layer: segments.cpp, huge_blocks.cpp, cache.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/clock.h"
#include "base/intrusive_list.h"
#include "base/spinlock.h"
#include "source/block_source.h"
#include "source/segment.h"

namespace mpcalloc::source {

struct Place {
  base::SpinLock lock;
  base::IntrusiveList<SegmentHeader> segments;  // free segments, newest first
  base::IntrusiveList<SegmentHeader> huge;      // free huge blocks, newest first
  size_t cached_bytes;
  size_t dirty_segments;  // cached segments whose pages are still resident
  // The recent peak of memory in use (mapped - cached) over the current and the previous
  // decay window. The cache may hold up to that peak minus what is in use now (at least the
  // cache_max budget): a working set freed and taken again within the decay time is reused
  // without faulting its pages in again, and the place never holds more than its recent peak.
  size_t peak_now;
  size_t peak_before;
  uint64_t window_start_ms;
  // Accounting, changed under the lock so a snapshot is consistent (huge <= mapped).
  size_t mapped_bytes;
  size_t segment_count;
  size_t small_segments;   // segments in use by small and by medium chunk managers
  size_t medium_segments;
  size_t huge_count;   // huge blocks in use
  size_t huge_bytes;   // their mapped bytes
  uint64_t unmap_failures;
  size_t foreign_bytes;  // handed out here from another place's cache (auto mode, no memory)
};

// Whether a block cached at `cached_at` (ms) has been unused for max_age ms at `now` (0: no
// decay). A block cached after `now` was read is young (base::aged).
constexpr bool decayed(uint64_t cached_at, uint64_t now, uint64_t max_age) {
  return max_age != 0 && base::aged(cached_at, now, max_age);
}

Place& place_of(int place);
inline Place& place_of(const SegmentHeader* seg) { return place_of(seg->node); }

// Binds a fresh mapping to its place's node(s), before anything touches it (NUMA active).
void bind_fresh(void* addr, size_t size, int place);
// Sets the policy of [addr, addr+size) to `place` (a node or kPlaceInterleaved); `move`: its
// pages move there too. false when the kernel refused.
bool bind_to(void* addr, size_t size, int place, bool move);

// Makes every byte of a free block past its headers read zero: the pages after the one holding
// the header are dropped (MADV_DONTNEED), the rest of that page is cleared (with 64 KiB pages
// it is most of the page). false (nothing changed) when the kernel refused.
bool zero_past_header(SegmentHeader* seg);

// The budget and decay of every place (options; changeable at run time).
size_t cache_budget();
uint64_t decay_ms();

// Fills in a header; the block stays at its place.
void init_header(SegmentHeader* seg, SegmentKind kind, void* owner, size_t map_size, bool zero);

// A fresh mapping of `size` bytes aligned to `align` for `place`: charged against the memory
// limit, bound to the place's node(s), with the huge-page advice of MPCALLOC_THP (`segment`:
// for small/medium chunks). nullptr when out of memory or past the limit.
void* map_fresh(size_t size, size_t align, int place, bool segment);
// What map_fresh does to a fresh range before anything touches it: NUMA binding, huge-page
// advice.
void prepare_fresh(void* addr, size_t size, int place, bool segment);
// A fresh mapping of `size` bytes aligned to kSegmentSize for `place`: registered, counted,
// header set up (kind kNone, is_zero). nullptr when out of memory or past the memory limit
// (after the caches were emptied to make room).
SegmentHeader* map_block(size_t size, int place, bool segment);
// Charges `bytes` about to be mapped against the memory limit, emptying the caches if that
// makes room; false (and one limit hit counted) when the limit forbids it. uncharge undoes it.
bool charge(size_t bytes);
void uncharge(size_t bytes);
// Accounting of a mapping that grows (delta > 0) or shrinks in place or by moving; `huge`: it
// is a huge block in use (counted in huge_bytes). The global charge is the caller's.
void account_resize(Place& pl, long delta, bool huge);
// A huge block goes into use (+1) or out of it (-1) with `bytes` mapped.
void account_huge(Place& pl, int delta_count, size_t bytes);

// A segment of `kind` goes into use (+1) or out of it (-1).
void account_segment_use(Place& pl, SegmentKind kind, int delta);
// Takes a free segment from the place's cache (nullptr: none).
SegmentHeader* cache_take_segment(Place& pl);
// How many cached segments of the place still hold their pages.
size_t cache_dirty_segments(Place& pl);
// When a fresh mapping for `place` failed: in NUMA auto mode, a free segment (huge: a block of
// at least map_size bytes) of another place, counted as foreign at `place`; never in strict
// mode, nor without NUMA. The block keeps its own place (it is cached there when freed).
SegmentHeader* take_foreign(int place, size_t map_size, bool huge);
// Takes the best-fitting free huge block of at least map_size bytes, splitting a much larger
// one at a segment boundary (the tail stays cached). When none is that large: a chain (linked
// through `next`) of the largest ones, largest first and whole, that together cover map_size,
// or the whole cache if it cannot, for the caller to join (join_pieces takes only the tail it
// needs of the last). nullptr: the cache has no huge block.
SegmentHeader* cache_take_huge(Place& pl, size_t map_size);

// Caches a free block (or unmaps it when it alone exceeds the budget); huge blocks merge with
// cached neighbours. Evicts what the budget and the decay say must go.
void cache_put(SegmentHeader* seg, bool huge);
// Unmaps blocks in no list (a chain linked through `next`); a block the kernel refuses to unmap
// goes back to its cache and is counted (stats: unmap_failures).
void unmap_chain(SegmentHeader* chain);

}  // namespace mpcalloc::source
