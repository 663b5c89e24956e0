// Portable C++ versions of what differs per CPU, for any other 64-bit Linux (and the reference
// the assembly versions are tested against). Layer arch: included through arch/arch.h.
#pragma once
#include <cstdint>

#include "arch/run_table_layout.h"

namespace mpcalloc::arch {

struct Generic {
  // The address of a thread-local word: unique among live threads, stable for a thread's life,
  // and even (the heap's "no fast free" keys are odd). Costs a TLS access where the assembly
  // versions read the thread pointer register.
  [[gnu::always_inline]] static const void* thread_key() noexcept {
    alignas(16) static __thread char anchor;
    return &anchor;
  }

  // No portable pause instruction; spinners fall back to sched_yield soon enough.
  [[gnu::always_inline]] static void spin_pause() noexcept {}

  [[gnu::always_inline]] static void call_indirect(void (*fn)(void*), void* arg) noexcept {
    fn(arg);
  }

  // The free fast path's hit: if p's run belongs to the calling thread, push p on the run's
  // local free list and return true. False, with nothing read, for null and segment-aligned
  // pointers (over-aligned huge blocks), and false when another key owns the run.
  template <RunTableLayout L>
  [[gnu::always_inline]] static bool free_to_own_run(void* p) noexcept {
    static_assert(L.valid());
    // The table's cells are const void* / Block* in the chunk layer: read them through a
    // may_alias word rather than guess the layer's types.
    typedef void* Word __attribute__((may_alias));
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uintptr_t off = a & L.segment_mask();
    if (off == 0) return false;
    char* table = reinterpret_cast<char*>(a - off);
    uintptr_t run = off >> L.run_shift;
    if (reinterpret_cast<Word*>(table)[run] != thread_key()) return false;
    Word* local = reinterpret_cast<Word*>(table + L.local_free_offset);
    *static_cast<Word*>(p) = local[run];
    local[run] = p;
    return true;
  }
};

}  // namespace mpcalloc::arch
