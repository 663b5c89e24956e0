// Small chunks: runs of 64 KiB holding blocks of one size class, no per-object header.
// Layer chunks: called by heap; calls source and base.
// Each run's metadata (RunMeta) sits in a table at the start of its segment, so the free fast
// path finds it from the address alone: segment base + ((addr >> 16) & 63) * 64.
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/intrusive_list.h"
#include "base/size_classes.h"
#include "source/segment.h"

namespace mpcalloc::chunks {

inline constexpr unsigned kRunShift = 16;
inline constexpr size_t kRunSize = size_t{1} << kRunShift;
inline constexpr unsigned kRunsPerSegment = source::kSegmentSize / kRunSize;  // run 0: headers
inline constexpr size_t kCarveBytes = 8192;  // blocks prepared per refill from the bump area

struct Block {
  Block* next;
};

enum RunState : uint8_t { kRunUnused = 0, kRunActive, kRunPartial, kRunFull };

struct RunMeta {
  const void* owner_key;  // equals the owner's fast-path key while frees may take the fast path
  Block* free;            // blocks ready for malloc
  Block* local_free;      // blocks freed by the owning thread since the last refill
  char* bump;             // start of the part not yet carved into blocks
  char* bump_end;         // end of the last whole block
  RunMeta* next;          // partial list links
  RunMeta* prev;
  uint32_t block_size;
  uint8_t cls;
  uint8_t state;
  uint8_t index;          // run number inside the segment
  uint8_t pad;
};
static_assert(sizeof(RunMeta) == 64, "the free fast path indexes runs by shifting");
static_assert(kRunsPerSegment * sizeof(RunMeta) == source::kRunTableBytes);

// Small segments add the free-run bitmap to the source header.
struct SmallSegment {
  source::SegmentHeader h;
  uint64_t free_runs;  // bit i: run i unused
};

// With checks on, each run has an occupancy bitmap (1 = allocated) in the header run.
inline constexpr size_t kCheckBitmapOffset = 8192;
inline constexpr size_t kCheckBitmapBytes = kRunSize / 16 / 8;  // one bit per 16-byte slot
static_assert(kCheckBitmapOffset + kRunsPerSegment * kCheckBitmapBytes <= kRunSize);

inline RunMeta* run_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<RunMeta*>((a & ~source::kSegmentMask) +
                                    ((a >> (kRunShift - 6)) & ((kRunsPerSegment - 1) << 6)));
}
inline uintptr_t run_segment_base(const RunMeta* r) {
  return reinterpret_cast<uintptr_t>(r) & ~source::kSegmentMask;
}
inline char* run_start(const RunMeta* r) {
  return reinterpret_cast<char*>(run_segment_base(r) + (uintptr_t{r->index} << kRunShift));
}
inline uint32_t run_capacity(const RunMeta* r) {
  return static_cast<uint32_t>((r->bump_end - run_start(r)) / r->block_size);
}
inline uint8_t* run_check_bitmap(const RunMeta* r) {
  return reinterpret_cast<uint8_t*>(run_segment_base(r) + kCheckBitmapOffset +
                                    r->index * kCheckBitmapBytes);
}

// Per-heap small-object state.
struct SmallState {
  RunMeta* active[base::kSmallClasses];
  base::IntrusiveList<RunMeta> partial[base::kSmallClasses];
  base::IntrusiveList<source::SegmentHeader> segments;  // small segments with unused runs
  const void* key;      // value of owner_key for runs taking fast-path frees
  const void* slow_key; // owner_key for runs whose frees must take the slow path
  void* owner;          // the heap, recorded in segment headers
};

// A run of class `cls` with a non-empty free list, made the active run; nullptr when out of
// memory.
RunMeta* small_refill(SmallState& s, unsigned cls);
// A block freed by the owner thread that the fast path did not take (full run, checks on,
// drained remote frees).
void small_free_local(SmallState& s, RunMeta* r, Block* b);
// Releases runs with every block free; segments with every run unused go back to the source.
// `all`: also the active runs. Returns the number of runs released.
size_t small_collect(SmallState& s, bool all);

}  // namespace mpcalloc::chunks
