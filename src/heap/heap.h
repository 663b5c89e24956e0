// Thread heaps: the malloc/free fast paths (inline, here) and the entry points of the slow
// paths (heap.cpp). Layer heap: called by api; calls chunks, source, base.
// The fast paths touch only the calling thread's heap: no atomics, no locks, no syscalls.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "arch/arch.h"
#include "base/mpsc_stack.h"
#include "base/size_classes.h"
#include "base/spinlock.h"
#include "chunks/medium.h"
#include "chunks/small.h"

namespace mpcalloc::heap {

struct Heap {
  // Fast-path malloc: size_cell[size] is the cell holding the free-block list of size's class
  // (one load, no size arithmetic): its active run's local_free (see point_cells). It points
  // at a cell that always holds nullptr when the class has no active run, the heap has no
  // thread (the empty heap) or checks are on, so malloc falls to the slow path.
  chunks::Block** size_cell[base::kDirectMax + 1];
  // The same for 1 KiB < size <= 8 KiB, by 256-byte steps (classes there are multiples of 256).
  chunks::Block** big_cell[base::kSmallMax / 256 + 1];
  chunks::SmallState small;
  chunks::MediumState medium;
  // Blocks other threads freed, drained on the slow path. Its own cache line: the freeing
  // threads write it, and the owner's slow-path fields must not share it.
  alignas(64) base::MpscStack remote;
  alignas(64) Heap* pool_next;
  Heap* all_next;
  uint64_t events;         // refills and full-run frees since the last collection
  // The two sides of the handshake that keeps a collector of idle heaps (collect_idle_heaps)
  // out of the owner's slow-path sections (OwnerSection: the drain of the remote list, partial
  // and full runs, segments, medium chunks, collections); the fast paths take no part.
  std::atomic<uint32_t> busy;        // set by the owner inside a section (plain stores)
  std::atomic<uint32_t> collecting;  // set by a collector that claims the heap
  uint64_t idle_collected_ms;        // the last idle collection (the collector's own field)
  int place;               // NUMA node (or source::kPlaceAny) of its segments, for its life
  int huge_place;          // where its huge blocks come from (its place, or interleaved)
  uint64_t maintained_ms;  // last time its owner looked at its free memory (relaxed atomic:
                           // collect_idle_heaps reads it)
  uint64_t pooled_ms;      // when it went to the pool (0: it has a thread, or was collected)
  std::atomic<bool> in_pool{false};  // in the pool (written under its lock; read as a hint)
  size_t pooled_bytes;     // segment bytes it held then (counted in the pool's total)
  // Checked mode only: held by the owner around medium-chunk changes and by any thread that
  // validates a medium pointer of this heap (the validation walks the owner's chunks).
  base::SpinLock check_lock;

  constexpr explicit Heap(chunks::Block** null_cell)
      : size_cell{}, big_cell{}, small{}, medium{}, remote{}, pool_next(nullptr),
        all_next(nullptr), events(0), busy{0}, collecting{0}, idle_collected_ms(0), place(0), huge_place(0), maintained_ms(0), pooled_ms(0), pooled_bytes(0),
        check_lock{} {
    for (auto& c : size_cell) c = null_cell;
    for (auto& c : big_cell) c = null_cell;
  }
};

// The heap of a thread that has not allocated yet: every size cell is the null cell, so its
// first malloc falls into the slow path with no extra branch.
extern constinit Heap g_empty_heap;
extern __thread Heap* t_heap __attribute__((tls_model("initial-exec")));

// Runs are keyed by their owner's thread key (the thread pointer on x86-64 and aarch64: one
// instruction, unique among live threads), so the free fast path needs no TLS variable.
[[gnu::always_inline]] inline const void* thread_key() { return arch::thread_key(); }

[[gnu::noinline]] void* malloc_slow(size_t size);
[[gnu::noinline]] void free_slow(void* p);

// The first block of a cell's list, unlinked; nullptr when the list is empty.
[[gnu::always_inline]] inline chunks::Block* pop_cell(chunks::Block** cell) {
  chunks::Block* b = *cell;
  if (__builtin_expect(b != nullptr, 1)) *cell = b->next;
  return b;
}

[[gnu::always_inline]] inline void* malloc_fast(size_t size) {
  Heap* h = t_heap;
  chunks::Block** cell;
  if (__builtin_expect(size <= base::kDirectMax, 1)) {
    cell = h->size_cell[size];
  } else if (size <= base::kSmallMax) {
    cell = h->big_cell[(size + 255) >> 8];
  } else {
    return malloc_slow(size);
  }
  if (chunks::Block* b = pop_cell(cell)) return b;
  return malloc_slow(size);
}

// The free fast path: a block of a run the calling thread owns goes on the run's local free
// list (arch::free_to_own_run, hand-written per architecture); anything else, including null
// and over-aligned huge blocks (segment-aligned), takes the slow path. x86-64: 13 instructions
// on the hit path, aarch64: 13 (see docs/ARCHITECTURE.md).
inline constexpr arch::RunTableLayout kRunTableLayout{
    source::kSegmentShift, chunks::kRunShift, offsetof(chunks::RunTable, local_free)};
static_assert(offsetof(chunks::RunTable, owner_key) == 0 &&
              sizeof(chunks::RunTable::owner_key[0]) == sizeof(void*) &&
              sizeof(chunks::RunTable::local_free[0]) == sizeof(void*) &&
              offsetof(chunks::Block, next) == 0 && kRunTableLayout.valid());
[[gnu::always_inline]] inline void free_fast(void* p) {
  if (__builtin_expect(arch::free_to_own_run<kRunTableLayout>(p), 1)) return;
  free_slow(p);
}

// The free behind every entry point: free_fast, or with MPCALLOC_CHECK=1 the checked free,
// which validates the pointer against the segment registry before reading anything near it
// (the fast path reads the run table at the pointer's segment base, which a wild pointer may
// not have). Set once by global_init, before any block exists; one indirect jump.
using FreeFn = void (*)(void*);
extern FreeFn g_free __attribute__((visibility("hidden")));
[[gnu::always_inline]] inline void free_entry(void* p) { arch::call_indirect(g_free, p); }
void free_unchecked(void* p);

// ---- slow-path entry points used by the api layer ----
// Allocation of `size` bytes aligned to `align` (power of two); zeroed when `zero`.
// nullptr when out of memory (errno is the caller's business).
void* allocate(size_t size, size_t align, bool zero);

// Aligned allocation (align a power of two; up to 16 is malloc) with a fast path for small
// sizes: a power-of-two class's blocks are aligned to their size (its runs are 64 KiB-aligned
// and take no colour), so the request rounded up to a power of two of at least `align` pops
// that class's free list when it has a block. Otherwise (and always with checks on, or before
// the thread's first allocation: the cells are then empty) the general slow path.
[[gnu::always_inline]] inline void* aligned_fast(size_t size, size_t align) {
  if (align <= 16) return malloc_fast(size);
  size_t want = size > align ? size : align;
  if (want <= base::kSmallMax) {
    size_t rounded = base::next_pow2(want);
    Heap* h = t_heap;
    chunks::Block** cell =
        rounded <= base::kDirectMax ? h->size_cell[rounded] : h->big_cell[(rounded + 255) >> 8];
    if (chunks::Block* b = pop_cell(cell)) return b;
  }
  return allocate(size, align, false);
}
// `call` names the API function for check-mode messages ("free", "realloc", ...).
void deallocate(void* p, const char* call);
void* reallocate(void* p, size_t size);
size_t usable_size(const void* p);
// Drains and collects the caller's heap and returns cached OS blocks. true if any released.
bool trim();
bool check_enabled();

struct HeapStats {
  size_t heap_count;
  size_t remote_frees;
};
HeapStats stats();

void global_init();
// Re-reads the calling thread's CPU affinity; from now on it allocates from a heap of the place
// that matches (its old heap goes to the pool). Returns the NUMA node, or -1 when the thread is
// not bound to one node (or NUMA is not in use).
int rebind_thread();
// NUMA nodes in use (1 without NUMA or with MPCALLOC_NUMA=off).
int numa_nodes();
// Moves the pages of block p to NUMA node `node`. 0, or -1 with errno (EINVAL: not a block or
// not a node; EIO or the kernel's error when pages could not move).
int migrate(void* p, int node);
// Passes the runtime options (budgets, decay) on to the layers below, after a change.
void apply_options();

}  // namespace mpcalloc::heap
