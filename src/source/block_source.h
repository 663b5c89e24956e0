// Where segments and huge blocks come from and go back to: per-place caches of free OS blocks
// under a byte budget with time decay, and the registry of live segment bases (checked frees).
// Layer source: called by chunks and heap; calls os.
#pragma once
#include <cstddef>
#include <cstdint>

#include "source/segment.h"

namespace mpcalloc::source {

// Places (see place.h): NUMA nodes 0..kMaxNodes-1, then these two.
inline constexpr int kMaxNodes = 64;
inline constexpr int kPlaceAny = kMaxNodes;              // first touch: unbound threads, NUMA off
inline constexpr int kPlaceInterleaved = kMaxNodes + 1;  // huge blocks spread over the nodes
inline constexpr int kPlaces = kMaxNodes + 2;

struct SourceConfig {
  size_t cache_max_bytes;  // free bytes each place may keep even past its recent peak
  uint64_t decay_ms;       // a cached block unused this long goes back to the OS
  size_t mem_limit_bytes;  // most bytes mapped from the OS in all (0: no limit)
  int thp;                 // transparent huge pages: base::ThpMode (default, never, madvise, always)
};
void configure(const SourceConfig& cfg);

// Placement of fresh mappings, set once at start-up.
struct NumaConfig {
  bool active;           // more than one node and NUMA not off: bind fresh memory to its place
  bool strict;           // MPOL_BIND (never another node's pages) instead of MPOL_PREFERRED
  uint64_t memory_mask;  // nodes with memory: what kPlaceInterleaved spreads over
};
void configure_numa(const NumaConfig& cfg);

// A segment of kSegmentSize for a small or medium chunk manager at `place`, run table zeroed.
SegmentHeader* acquire_segment(SegmentKind kind, void* owner, int place);
void release_segment(SegmentHeader* seg);

// A block of at least `map_size` bytes (page multiple), aligned to kSegmentSize, at `place`;
// the header is set up with kind kHuge and map_size = the real size, and the run table at its
// base reads zero (the free fast path looks there). `want_zero`: prefer memory known zero.
SegmentHeader* acquire_huge(size_t map_size, bool want_zero, int place);
void release_huge(SegmentHeader* seg);
// Resize a huge block to new_map_size without copying (mremap); may move it. nullptr on
// failure (the old block is left intact).
SegmentHeader* resize_huge(SegmentHeader* seg, size_t new_map_size);

// Moves the pages of a huge block in use to NUMA node `node` and makes that node its place
// (its memory is cached there when freed). false when the kernel could not.
bool migrate_huge(SegmentHeader* seg, int node);

// Blocks aligned to kSegmentSize or more, with no header (the chunk layer keeps their sizes):
// mapped and unmapped here so they count in the stats as huge blocks of `place`.
void* map_overaligned(size_t map_size, size_t align, int place);
void unmap_overaligned(void* p, size_t map_size, int place);

// Is `base` the base of a live segment or huge block of ours? Safe for any address.
bool is_registered(uintptr_t base);

// Whether some place keeps more free memory than the cache_max floor (the recent peak lets it):
// memory a background purger would give back once it decays.
bool cache_past_floor();

// Returns every cached block to the OS. Returns the number of bytes released.
size_t trim_cache();
// Decay step: releases cached blocks older than the decay time. Cheap when nothing to do.
void decay_tick();

struct SourceStats {
  size_t mapped_bytes;
  size_t peak_mapped_bytes;
  size_t segment_count;
  size_t small_segments;  // segments in use by small runs
  size_t medium_segments; // segments in use by medium chunks
  size_t huge_count;
  size_t huge_bytes;
  size_t cached_bytes;
  size_t cached_segments;  // of which free segments (the rest: free huge blocks)
  uint64_t unmap_failures;
  size_t foreign_bytes;  // memory of another place handed out here (NUMA auto mode only)
  uint64_t limit_hits;   // mappings refused by the memory limit (process-wide)
  size_t mem_limit;      // the limit in force (0: none)
};
// The whole process (place < 0) or one place. Each place's figures are one consistent snapshot.
SourceStats stats(int place = -1);
// The same without waiting for a lock (async-signal-safe: the interrupted thread may hold one);
// a place whose lock is busy is left out and *complete set to false.
SourceStats stats_try(int place, bool* complete);

// fork support: every place's lock taken before fork, released after.
void fork_prepare();
void fork_parent();
void fork_child();

}  // namespace mpcalloc::source
