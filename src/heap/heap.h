// Thread heaps: the malloc/free fast paths (inline, here) and the entry points of the slow
// paths (heap.cpp). Layer heap: called by api; calls chunks, source, base.
// The fast paths touch only the calling thread's heap: no atomics, no locks, no syscalls.
#pragma once
#include <cstddef>
#include <cstdint>

#include "base/mpsc_stack.h"
#include "base/size_classes.h"
#include "chunks/medium.h"
#include "chunks/small.h"

namespace mpcalloc::heap {

struct Heap {
  chunks::RunMeta* direct[base::kDirectSlots];  // run serving sizes (16(i-1), 16i]
  chunks::SmallState small;
  chunks::MediumState medium;
  base::MpscStack remote;  // blocks other threads freed, drained on the slow path
  Heap* pool_next;
  Heap* all_next;
  uint64_t refills;        // slow-path refills since the last collection

  constexpr explicit Heap(chunks::RunMeta* empty_run)
      : direct{}, small{}, medium{}, remote{}, pool_next(nullptr), all_next(nullptr), refills(0) {
    for (auto& d : direct) d = empty_run;
  }
};

// The heap of a thread that has not allocated yet: every direct slot points at an empty run,
// so its first malloc falls into the slow path with no extra branch.
extern constinit Heap g_empty_heap;
extern __thread Heap* t_heap __attribute__((tls_model("initial-exec")));

[[gnu::noinline]] void* malloc_slow(size_t size);
[[gnu::noinline]] void free_slow(void* p);

[[gnu::always_inline]] inline void* malloc_fast(size_t size) {
  Heap* h = t_heap;
  if (__builtin_expect(size <= base::kDirectMax, 1)) {
    chunks::RunMeta* r = h->direct[(size + 15) >> 4];
    chunks::Block* b = r->free;
    if (__builtin_expect(b != nullptr, 1)) {
      r->free = b->next;
      return b;
    }
  }
  return malloc_slow(size);
}

[[gnu::always_inline]] inline void free_fast(void* p) {
  // Null and segment-aligned pointers (over-aligned huge blocks) have no run table entry.
  if (__builtin_expect((reinterpret_cast<uintptr_t>(p) & source::kSegmentMask) != 0, 1)) {
    chunks::RunMeta* r = chunks::run_of(p);
    if (__builtin_expect(r->owner_key == t_heap, 1)) {
      chunks::Block* b = static_cast<chunks::Block*>(p);
      b->next = r->local_free;
      r->local_free = b;
      return;
    }
  }
  free_slow(p);
}

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

}  // namespace mpcalloc::heap
