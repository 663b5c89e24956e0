// x86-64: the thread pointer is at %fs:0, the free fast path is hand-written, `pause` spins.
// Layer arch: included through arch/arch.h only.
#pragma once
#include <cstdint>

#include "arch/run_table_layout.h"

#if !defined(__x86_64__)
#error "arch/x86_64.h is for x86-64: include arch/arch.h"
#endif

namespace mpcalloc::arch {

struct X86_64 {
  // The thread control block's self pointer: one instruction, unique among live threads, and
  // 64-byte aligned (the heap's "no fast free" keys are odd).
  [[gnu::always_inline]] static const void* thread_key() noexcept {
    const void* tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    return tp;
  }

  [[gnu::always_inline]] static void spin_pause() noexcept { __builtin_ia32_pause(); }

  // Generic::free_to_own_run in 12 instructions (+ ret). In assembly because g++ and clang
  // fold the two table accesses into one pointer plus an `add` (one instruction more); the
  // mask doubles as the null test, and both arrays are one scaled-index access from the base.
  [[gnu::always_inline]] static void call_indirect(void (*fn)(void*), void* arg) noexcept {
    fn(arg);
  }

  template <RunTableLayout L>
  [[gnu::always_inline]] static bool free_to_own_run(void* p) noexcept {
    static_assert(L.valid() && sizeof(void*) == 8);  // the (,%rdx,8) scale is the word size
    __asm__ goto(
        "mov %[p], %%rdx\n\t"
        "and %[mask], %%edx\n\t"
        "je %l[miss]\n\t"
        "mov %[p], %%rax\n\t"
        "sub %%rdx, %%rax\n\t"
        "shr %[run_shift], %%edx\n\t"
        "mov %%fs:0, %%rcx\n\t"
        "cmp %%rcx, (%%rax,%%rdx,8)\n\t"
        "jne %l[miss]\n\t"
        "mov %c[local](%%rax,%%rdx,8), %%rcx\n\t"
        "mov %%rcx, (%[p])\n\t"
        "mov %[p], %c[local](%%rax,%%rdx,8)"
        :
        : [p] "r"(p), [mask] "i"(L.segment_mask()), [run_shift] "i"(L.run_shift),
          [local] "i"(L.local_free_offset)
        : "rax", "rdx", "rcx", "cc", "memory"
        : miss);
    return true;
  miss:
    return false;
  }
};

}  // namespace mpcalloc::arch
