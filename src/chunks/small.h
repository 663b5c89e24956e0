// Small chunks: runs of 64 KiB holding blocks of one size class, no per-object header.
// Layer chunks: called by heap; calls source and base.
// Each run's metadata sits in a table at the start of its segment (RunTable), so the free fast
// path finds it from the address alone.
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/intrusive_list.h"
#include "base/size_classes.h"
#include "os/os_memory.h"
#include "source/segment.h"

namespace mpcalloc::chunks {

inline constexpr unsigned kRunShift = 16;
inline constexpr size_t kRunSize = size_t{1} << kRunShift;
inline constexpr unsigned kRunsPerSegment = source::kSegmentSize / kRunSize;  // run 0: headers
static_assert(kRunSize >= os::kMaxPageSize, "a run spans whole pages of every supported size");
// Blocks are prepared from a run's untouched part progressively: a little for a fresh run (a
// thread that uses a class lightly touches little memory), then more at each refill, so a
// hot class's run is soon fully carved and refills become rare.
inline constexpr size_t kFirstCarveBytes = 4096;
inline constexpr size_t kCarveBytes = 16384;
// Runs are 64 KiB-aligned, and so is the set period of a 512 KiB 8-way L2 (and a 4 KiB
// multiple of every L1's): without an offset, the first lines of a class's blocks fall into
// the same few cache sets in every run (a 4 KiB class into 16 sets of the L2). A new run
// starts its first block at a multiple of kColourStep within what the class leaves over
// (65536 mod its size), a different one for each run a heap makes, so the blocks' first
// lines of different runs spread over the sets. Power-of-two classes leave nothing over
// and stay aligned to their size, as aligned allocations need.
inline constexpr size_t kColourStep = 64;

struct Block {
  Block* next;
};

enum RunState : uint8_t { kRunUnused = 0, kRunActive, kRunPartial, kRunFull };

// Slow-path metadata of one run.
struct RunMeta {
  char* bump;             // start of the part not yet carved into blocks
  char* bump_end;         // end of the last whole block
  RunMeta* next;          // partial list links
  RunMeta* prev;
  uint32_t block_size;
  uint8_t cls;
  uint8_t state;
  uint8_t index;          // run number inside the segment
  uint8_t pad0;
  // What the last count of local_free found: the list's head then (offset in the segment,
  // 0: no count since the list was last taken) and its length. The fast path only pushes in
  // front, so the next count walks the newer blocks alone (see small_collect). For an unused
  // run, counted_at holds when it was released instead (low 32 bits of os::now_ms).
  uint16_t counted;
  uint16_t colour;        // offset of the first block from the run's start (see kColourStep)
  uint32_t counted_at;
};
static_assert(sizeof(RunMeta) == 48);

// The first kRunTableBytes of a small segment. The free fast path reads owner_key[i] and
// pushes on local_free[i] with i = (addr >> 16) & 63: two arrays of 8-byte cells, so both are
// one scaled-index access. Medium and huge segments keep this table zero (no owner: every
// free of theirs takes the slow path).
struct RunTable {
  const void* owner_key[kRunsPerSegment];  // the owning thread's key while frees may be fast
  Block* local_free[kRunsPerSegment];      // blocks freed by the owning thread
  RunMeta meta[kRunsPerSegment];
};
static_assert(sizeof(RunTable) == source::kRunTableBytes);

// Small segments add the free-run bitmap to the source header.
struct SmallSegment {
  source::SegmentHeader h;
  uint64_t free_runs;     // bit i: run i unused
  uint64_t purged_runs;   // bit i: run i unused and its pages given back to the OS
  uint64_t untouched_runs;  // bit i: run i unused since the segment came fresh from the OS
  // Every small segment of the heap, also those with every run in use (for small_absorb).
  SmallSegment* all_next;
  SmallSegment* all_prev;
};

// With checks on, each run has an occupancy bitmap (1 = allocated) in the header run.
inline constexpr size_t kCheckBitmapOffset = 8192;
inline constexpr size_t kCheckBitmapBytes = kRunSize / 16 / 8;  // one bit per 16-byte slot
static_assert(kCheckBitmapOffset + kRunsPerSegment * kCheckBitmapBytes <= kRunSize);

// Without checks the same area holds each run's free map: bit i set when the 16-byte slot i
// starts a block of the part of local_free that the last count walked (valid while counted_at
// marks a count). Reordering a partial run's list before reuse needs no second walk.
inline uint64_t* run_free_map(const RunMeta* r);
// A partial run taken back into use hands out its counted free blocks in address order when
// at most this many came since the count (walked to complete the map); else in free order.
inline constexpr unsigned kReorderWalk = 64;
// ... and when it has more than this many free blocks: for a handful, the order hardly
// matters, and the rebuild (a scan of the run's whole map, a write into every block) costs
// more than it saves (runs of big classes, taken back with one or two free blocks each).
inline constexpr unsigned kReorderMin = 8;

// A run's bump pointer and state are read by checked frees of other threads while the owner
// carves the run: those reads and the owner's writes are relaxed atomics (plain moves).
inline char* run_bump(const RunMeta* r) { return __atomic_load_n(&r->bump, __ATOMIC_RELAXED); }
inline void set_run_bump(RunMeta* r, char* b) { __atomic_store_n(&r->bump, b, __ATOMIC_RELAXED); }
inline uint8_t run_state(const RunMeta* r) { return __atomic_load_n(&r->state, __ATOMIC_RELAXED); }
inline void set_run_state(RunMeta* r, uint8_t s) { __atomic_store_n(&r->state, s, __ATOMIC_RELAXED); }

inline RunTable* run_table_of(const void* p) {
  return reinterpret_cast<RunTable*>(reinterpret_cast<uintptr_t>(p) & ~source::kSegmentMask);
}
inline unsigned run_index_of(const void* p) {
  return static_cast<unsigned>((reinterpret_cast<uintptr_t>(p) >> kRunShift) & (kRunsPerSegment - 1));
}
inline RunMeta* run_of(const void* p) { return &run_table_of(p)->meta[run_index_of(p)]; }
inline RunTable* table_of(const RunMeta* r) { return run_table_of(r); }
inline Block*& run_local_free(const RunMeta* r) { return table_of(r)->local_free[r->index]; }
inline const void*& run_owner_key(const RunMeta* r) { return table_of(r)->owner_key[r->index]; }
inline uintptr_t run_segment_base(const RunMeta* r) {
  return reinterpret_cast<uintptr_t>(r) & ~source::kSegmentMask;
}
inline char* run_start(const RunMeta* r) {
  return reinterpret_cast<char*>(run_segment_base(r) + (uintptr_t{r->index} << kRunShift));
}
// The first block (run_start plus the run's colour).
inline char* run_first(const RunMeta* r) { return run_start(r) + r->colour; }
// colour < block_size, so the run start divides as the first block does.
inline uint32_t run_capacity(const RunMeta* r) {
  return static_cast<uint32_t>((r->bump_end - run_start(r)) / r->block_size);
}
// Blocks carved so far (all of them once bump reaches bump_end). A partial run is mostly
// carved whole; one that was another heap's active run (small_absorb) may not be.
inline uint32_t run_carved(const RunMeta* r) {
  return static_cast<uint32_t>((run_bump(r) - run_start(r)) / r->block_size);
}
inline uint8_t* run_check_bitmap(const RunMeta* r) {
  return reinterpret_cast<uint8_t*>(run_segment_base(r) + kCheckBitmapOffset +
                                    r->index * kCheckBitmapBytes);
}
inline uint64_t* run_free_map(const RunMeta* r) {
  return reinterpret_cast<uint64_t*>(run_check_bitmap(r));
}

// Per-heap small-object state.
struct SmallState {
  RunMeta* active[base::kSmallClasses];
  base::IntrusiveList<RunMeta> partial[base::kSmallClasses];
  base::IntrusiveList<source::SegmentHeader> segments;  // small segments with unused runs
  const void* key;      // owner_key for runs taking fast-path frees: the owning thread's
                        // thread pointer, or slow_key when no thread owns the heap
  const void* slow_key; // owner_key for runs whose frees must take the slow path
  void* owner;          // the heap, recorded in segment headers
  int place;            // where its segments come from (source::kPlace*, or a NUMA node)
  uint32_t runs_made;   // new runs so far: picks each one's colour
  uint32_t runs_at_collect;  // runs_made at the last small_collect
  uint32_t runs_at_adopt;    // runs_made when its thread took the heap
  size_t segment_count; // small segments held
  SmallSegment* all_segments;  // every one of them (linked through all_next)
  bool check_bitmaps;   // checked mode: a new run starts with a clear occupancy bitmap
};

// A non-empty list of free blocks of class `cls` taken from the active run (made active if
// needed); nullptr when out of memory. The caller (the heap) puts what it does not hand out
// back as the active run's local_free: that list is the class's malloc list, which the
// malloc fast path pops and the owner's fast frees into the run push on, so a block freed
// is the next one handed out (a block that waited behind a batch of older ones came back
// cold: mstress missed the first-level cache on 78 % of its mallocs, tcmalloc on 21 %). The
// heap points the class's fast-path cells at that list whenever the active run changes.
Block* small_refill(SmallState& s, unsigned cls);
// small_refill in two steps: the blocks of runs the class already has (nullptr when it has
// none left), then a new run. Between them the heap may release other classes' empty runs,
// so that the new run reuses their memory instead of growing the footprint.
Block* small_refill_reuse(SmallState& s, unsigned cls);
Block* small_refill_new(SmallState& s, unsigned cls);
// The common refill: the active run's list (empty when malloc popped it dry; blocks that
// other threads' frees brought back, after a drain), plus a fresh batch from the run's
// untouched part when the list is empty or the run young. nullptr when there are none.
Block* small_take_local(RunMeta* r);
// Sets the fast-path key of every run that may take fast frees (active and partial runs).
void small_set_key(SmallState& s, const void* key);
// A block freed by the owner thread that the fast path did not take (full run, checks on).
// A partial run that takes it gets the owner's key: the owner uses it, its next frees there
// take the fast path.
void small_free_local(SmallState& s, RunMeta* r, Block* b);
// Frees of other threads, drained from the heap's remote list by the owner or by a collector
// of idle heaps: a chain first..last of blocks of run r (linked through next; last->next is
// overwritten) goes onto the run's list in one splice, one pointer read per block. A full run
// rejoins the partial queue without the fast-free key: until the owner takes it back into use
// (a refill) or frees into it, its frees take the slow path, and a collector of idle heaps may
// release it once it is empty (a thread that waits, polling with a few fast-path calls, would
// otherwise keep every run its one drain emptied until its own maintenance).
void small_free_chain_unkeyed(SmallState& s, RunMeta* r, Block* first, Block* last);
// Hardening for slow-path pops: aborts with a message unless b is a block boundary inside a
// small run of a live segment (a write after free corrupted a list otherwise).
void small_check_block(const Block* b);
// Releases runs with every block free; segments with every run unused go back to the source.
// `all`: also the active runs. Returns the number of runs released.
size_t small_collect(SmallState& s, bool all);
// small_collect for a collector that is not the owning thread: only the partial runs without
// the fast-free key. Returns the number of runs released.
size_t small_collect_unkeyed(SmallState& s);
// Gives the pages of unused runs back to the OS (MADV_DONTNEED, or MADV_FREE when `lazy`) in
// the segments that stay because other runs are in use: runs released at least age_ms before
// now_ms (age_ms 0: every unused run). Neighbouring runs go in one call. Returns the bytes.
size_t small_purge(SmallState& s, uint64_t now_ms, uint64_t age_ms, bool lazy);
// Bytes of unused runs given back by small_purge and not used again since (all heaps).
size_t small_purged_bytes();
// Moves every run and segment of `from` (a heap no thread owns, its remote frees drained) to
// `into`: the segments name into.owner, the runs that had an active or partial place in
// `from` join into's partial queues, and every run in use takes into's slow key (frees to it
// take the slow path until into's owner uses it). `from` is left empty.
void small_absorb(SmallState& into, SmallState& from);

}  // namespace mpcalloc::chunks
