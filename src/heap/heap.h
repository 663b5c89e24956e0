// Thread heaps: the malloc/free fast paths (inline, here) and the entry points of the slow
// paths (heap.cpp). Layer heap: called by api; calls chunks, source, base.
// The fast paths touch only the calling thread's heap: no atomics, no locks, no syscalls.
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/mpsc_stack.h"
#include "base/size_classes.h"
#include "base/spinlock.h"
#include "chunks/medium.h"
#include "chunks/small.h"

namespace mpcalloc::heap {

struct Heap {
  // Fast-path malloc: size_cell[size] is the cell holding the free-block list of size's class
  // (one load, no size arithmetic). It points at a cell that always holds nullptr when the
  // heap has no thread (the empty heap) or checks are on, so malloc falls to the slow path.
  chunks::Block** size_cell[base::kDirectMax + 1];
  // The same for 1 KiB < size <= 8 KiB, by 256-byte steps (classes there are multiples of 256).
  chunks::Block** big_cell[base::kSmallMax / 256 + 1];
  chunks::Block* class_free[base::kSmallClasses];  // blocks ready for malloc, per class
  chunks::SmallState small;
  chunks::MediumState medium;
  // Blocks other threads freed, drained on the slow path. Its own cache line: the freeing
  // threads write it, and the owner's slow-path fields must not share it.
  alignas(64) base::MpscStack remote;
  alignas(64) Heap* pool_next;
  Heap* all_next;
  uint64_t events;         // refills and full-run frees since the last collection
  int place;               // NUMA node (or source::kPlaceAny) of its segments, for its life
  int huge_place;          // where its huge blocks come from (its place, or interleaved)
  uint64_t maintained_ms;  // last time its free memory was looked at (collect, purge)
  uint64_t pooled_ms;      // when it went to the pool (0: it has a thread, or was collected)
  // Checked mode only: held by the owner around medium-chunk changes and by any thread that
  // validates a medium pointer of this heap (the validation walks the owner's chunks).
  base::SpinLock check_lock;

  constexpr explicit Heap(chunks::Block** null_cell)
      : size_cell{}, big_cell{}, class_free{}, small{}, medium{}, remote{}, pool_next(nullptr),
        all_next(nullptr), events(0), place(0), huge_place(0), maintained_ms(0), pooled_ms(0),
        check_lock{} {
    for (auto& c : size_cell) c = null_cell;
    for (auto& c : big_cell) c = null_cell;
  }
};

// The heap of a thread that has not allocated yet: every size cell is the null cell, so its
// first malloc falls into the slow path with no extra branch.
extern constinit Heap g_empty_heap;
extern __thread Heap* t_heap __attribute__((tls_model("initial-exec")));

// The thread pointer (%fs:0): one instruction, unique among live threads. Runs are keyed by
// their owner's thread pointer so the free fast path needs no TLS variable.
[[gnu::always_inline]] inline const void* thread_key() {
  const void* tp;
  __asm__("mov %%fs:0, %0" : "=r"(tp));
  return tp;
}

[[gnu::noinline]] void* malloc_slow(size_t size);
[[gnu::noinline]] void free_slow(void* p);

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
  chunks::Block* b = *cell;
  if (__builtin_expect(b != nullptr, 1)) {
    *cell = b->next;
    return b;
  }
  return malloc_slow(size);
}

// The free fast path, in C++ terms:
//   size_t off = p & kSegmentMask;
//   if (off != 0) {                          // not null, not an over-aligned huge block
//     RunTable* t = p - off; i = off >> 16;
//     if (t->owner_key[i] == thread_key()) { p->next = t->local_free[i]; t->local_free[i] = p; return; }
//   }
//   free_slow(p);
// Written in assembly because compilers fold the two table accesses into a shared pointer
// with an extra add; the mask doubles as the null test. 13 instructions on the hit path
// (see docs/ARCHITECTURE.md).
static_assert(source::kSegmentMask == 0x3fffff && chunks::kRunShift == 16 &&
              chunks::kRunsPerSegment == 64 &&
              offsetof(chunks::RunTable, local_free) == 512);
[[gnu::always_inline]] inline void free_fast(void* p) {
  __asm__ goto(
      "mov %[p], %%rdx\n\t"
      "and $0x3fffff, %%edx\n\t"
      "je %l[slow]\n\t"
      "mov %[p], %%rax\n\t"
      "sub %%rdx, %%rax\n\t"
      "shr $16, %%edx\n\t"
      "mov %%fs:0, %%rcx\n\t"
      "cmp %%rcx, (%%rax,%%rdx,8)\n\t"
      "jne %l[slow]\n\t"
      "mov 512(%%rax,%%rdx,8), %%rcx\n\t"
      "mov %%rcx, (%[p])\n\t"
      "mov %[p], 512(%%rax,%%rdx,8)"
      :
      : [p] "r"(p)
      : "rax", "rdx", "rcx", "cc", "memory"
      : slow);
  return;
slow:
  free_slow(p);
}

// The free behind every entry point: free_fast, or with MPCALLOC_CHECK=1 the checked free,
// which validates the pointer against the segment registry before reading anything near it
// (the fast path reads the run table at the pointer's segment base, which a wild pointer may
// not have). Set once by global_init, before any block exists; one indirect jump.
using FreeFn = void (*)(void*);
extern FreeFn g_free __attribute__((visibility("hidden")));
[[gnu::always_inline]] inline void free_entry(void* p) { g_free(p); }
void free_unchecked(void* p);

// ---- slow-path entry points used by the api layer ----
// Allocation of `size` bytes aligned to `align` (power of two); zeroed when `zero`.
// nullptr when out of memory (errno is the caller's business).
void* allocate(size_t size, size_t align, bool zero);
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
