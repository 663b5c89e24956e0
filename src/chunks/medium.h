// Medium chunks: per-heap segments carved into variable-size chunks with boundary tags, kept
// in segregated doubly-linked free lists (4 lists per power of two). A freed chunk merges with
// free neighbours in O(1). Layer chunks: called by heap; calls source and base.
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/bits.h"
#include "base/intrusive_list.h"
#include "source/segment.h"

namespace mpcalloc::chunks {

inline constexpr size_t kMediumMax = size_t{1} << 20;  // larger requests are huge blocks
inline constexpr size_t kChunkHeader = 16;
inline constexpr size_t kMinChunk = 64;
inline constexpr unsigned kMediumBins = 37;
inline constexpr size_t kMediumArenaOffset = 8192;  // run table + header, rounded

struct Chunk {
  size_t prev_size;  // size of the previous chunk, valid only when it is free (its footer)
  size_t head;       // size | kInUse | kPrevInUse | kPurged
  Chunk* fd;         // free list links, valid only when free
  Chunk* bk;
  uint64_t freed_ms; // when it was freed (the heap's clock), valid only when free
};
inline constexpr size_t kInUse = 1;
inline constexpr size_t kPrevInUse = 2;
// Checked mode: an in-use chunk whose free was validated (possibly by another thread) and has
// not reached the free lists yet; a second free of it is a double free.
inline constexpr size_t kFreePending = 4;
// A free chunk whose whole pages (past its header and links) were given back to the OS.
inline constexpr size_t kPurged = 8;
inline constexpr size_t kFlagMask = 15;

// Requests are rounded to classes (8 per power of two, at most 12.5% waste) so that freed
// chunks can wait in per-class LIFO lists ("quick lists", no merging) and serve the next
// request of the class in O(1), at the same address: a class's chunks keep their places, so
// the pages a program touched are the ones it gets again (with merging, each split falls
// elsewhere and, over time, touches every page of the segments: mstress faulted in 2.5x the
// pages). A request no free chunk fits splits a quick chunk of a larger class before a new
// segment is mapped. The lists are bounded; chunks go on to the real free lists (merging) when
// the lists are full, when they have waited half the decay time (at the heap's maintenance;
// they are purged from the free lists later like any free chunk), when the OS gives no more
// memory (a limit), at collection and at thread exit.
inline constexpr unsigned kQuickClasses = 8 * 7;  // 8 KiB .. 1 MiB
// At most kQuickMaxBytes per heap, and no more than the heap has in use (a program freeing
// most of its medium memory gets its segments merged whole and back; the lists are flushed
// when they pass that), except kQuickNewestBytes from the newest segment, where churn is.
inline constexpr size_t kQuickMaxBytes = size_t{32} << 20;
inline constexpr size_t kQuickNewestBytes = size_t{1} << 20;

struct MediumState {
  Chunk* bins[kMediumBins];
  uint64_t nonempty;  // bit b: bins[b] has chunks
  Chunk* quick[kQuickClasses];
  size_t quick_bytes;
  size_t in_use_bytes;  // chunks handed out and not freed
  bool quick_off;     // checked mode: every free must reach the boundary tags
  base::IntrusiveList<source::SegmentHeader> segments;
  size_t segment_count;
  void* owner;
  int place;          // where its segments come from (source::kPlace*, or a NUMA node)
  uint64_t clock_ms;  // the heap's clock (set at its maintenance): freed chunks are stamped
  size_t purged_bytes;  // pages of free chunks given back to the OS
};

inline Chunk* chunk_of(const void* p) {
  return reinterpret_cast<Chunk*>(reinterpret_cast<uintptr_t>(p) - kChunkHeader);
}
// Chunk heads are read and written as relaxed atomics: the owner flips the prev-in-use bit
// of a neighbour's head while another thread may read that (in-use) chunk's size for realloc
// or a checked free. The size bits never change under such a reader; the atomics make it
// well-defined (they compile to plain moves).
inline size_t head_of(const Chunk* c) { return __atomic_load_n(&c->head, __ATOMIC_RELAXED); }
inline void set_head(Chunk* c, size_t v) { __atomic_store_n(&c->head, v, __ATOMIC_RELAXED); }
inline size_t chunk_size(const Chunk* c) { return head_of(c) & ~kFlagMask; }
inline size_t medium_usable(const void* p) { return chunk_size(chunk_of(p)) - kChunkHeader; }
// The chunk size a block of `size` bytes needs (header included).
inline size_t medium_need(size_t size) {
  size_t need = base::align_up(size + kChunkHeader, 16);
  return need < kMinChunk ? kMinChunk : need;
}
// A resize that the block's chunk takes as it is: the new size fits and leaves less than 1/8
// spare (medium_resize_in_place gives more back). Reads the block's own head only, so the
// caller needs no lock and need not own the segment.
inline bool medium_fits_as_is(const void* p, size_t new_size) {
  size_t size = chunk_size(chunk_of(p));
  size_t need = medium_need(new_size);
  return need <= size && size - need < size / 8;
}

// nullptr when out of memory. `align` is a power of two; > 16 costs a split.
void* medium_alloc(MediumState& s, size_t size, size_t align);
void medium_free(MediumState& s, void* p);
// Grows or shrinks in place; false if it cannot (the block is unchanged).
bool medium_resize_in_place(MediumState& s, void* p, size_t new_size);
// Empties the quick lists into the free lists.
void medium_flush_quick(MediumState& s);
// Moves the quick-list chunks that have waited `age_ms` or more (by s.clock_ms) to the free
// lists.
void medium_flush_quick_older(MediumState& s, uint64_t age_ms);
// Releases every medium segment that is entirely free (after flushing). Returns how many.
size_t medium_collect(MediumState& s);
// Gives the whole pages inside free chunks free since at least `age_ms` before s.clock_ms back
// to the OS (`lazy`: MADV_FREE, else MADV_DONTNEED); the chunks stay free and usable. Returns
// the bytes given back.
size_t medium_purge(MediumState& s, uint64_t age_ms, bool lazy);
// Pages of free medium chunks given back to the OS, all heaps (for stats).
size_t medium_purged_bytes();
// Moves every segment and free chunk of `from` (a heap no thread owns, its remote frees
// drained) to `into`; its quick lists merge first. `from` is left empty.
void medium_absorb(MediumState& into, MediumState& from);

enum class ChunkStatus { kInUse, kFree, kInterior, kOutside };
// For checked frees: walks the segment to classify p (slow, O(chunks in segment)). A chunk
// marked kFreePending counts as free. The caller keeps the owner from changing the segment.
ChunkStatus medium_classify(const void* p);
inline void medium_mark_pending(void* p) { set_head(chunk_of(p), head_of(chunk_of(p)) | kFreePending); }

}  // namespace mpcalloc::chunks
