// aarch64 (Grace, Graviton, A64FX): the thread pointer is tpidr_el0, the free fast path is
// hand-written, `isb` spins. Layer arch: included through arch/arch.h only.
#pragma once
#include <cstdint>

#include "arch/run_table_layout.h"

#if !defined(__aarch64__)
#error "arch/aarch64.h is for aarch64: include arch/arch.h"
#endif

namespace mpcalloc::arch {

struct Aarch64 {
  // tpidr_el0 (glibc points it at the thread control block): one `mrs`, unique among live
  // threads and 16-byte aligned (the heap's "no fast free" keys are odd). The builtin, unlike
  // an asm, lets the compiler schedule and share it.
  [[gnu::always_inline]] static const void* thread_key() noexcept {
    return __builtin_thread_pointer();
  }

  // `yield` is a no-op on the Neoverse cores, so a spinner would hammer the lock's line; `isb`
  // waits for the pipeline to drain, a short real delay like x86's `pause`.
  [[gnu::always_inline]] static void spin_pause() noexcept { __asm__ __volatile__("isb" ::: "memory"); }

  // Generic::free_to_own_run in 12 instructions (+ ret). g++ 12 compiles the C++ to 13 and
  // clang 14 to 14: they shift the run index and build the local-free address with a separate
  // add. Here the owner key's address is one `add` with a shifted operand (the run bits
  // shifted down to a word index) and both arrays are reached from it with an immediate
  // offset; the mask doubles as the null test. x9-x11 are caller-saved scratch registers.
  // g++ 12 loads the target of an indirect tail call into another register and then copies it
  // into x16, where it keeps such targets (for BTI); loading it into x16 directly saves the
  // copy on every free (3 instructions from `free` to the target instead of 4).
  [[gnu::always_inline]] static void call_indirect(void (*fn)(void*), void* arg) noexcept {
    register void (*target)(void*) __asm__("x16") = fn;
    __asm__("" : "+r"(target));
    target(arg);
  }

  template <RunTableLayout L>
  [[gnu::always_inline]] static bool free_to_own_run(void* p) noexcept {
    static_assert(L.valid() && sizeof(void*) == 8);  // the shift by run_shift - 3 scales by 8
    static_assert(L.local_free_offset <= 32760);      // an ldr/str scaled 12-bit offset
    __asm__ goto(
        "ands x9, %[p], #%c[mask]\n\t"
        "b.eq %l[miss]\n\t"
        "and x10, %[p], #%c[base_mask]\n\t"
        "and x11, %[p], #%c[run_bits]\n\t"
        "add x10, x10, x11, lsr #%c[to_word]\n\t"
        "mrs x11, tpidr_el0\n\t"
        "ldr x9, [x10]\n\t"
        "cmp x9, x11\n\t"
        "b.ne %l[miss]\n\t"
        "ldr x9, [x10, #%c[local]]\n\t"
        "str x9, [%[p]]\n\t"
        "str %[p], [x10, #%c[local]]"
        :
        : [p] "r"(p), [mask] "i"(L.segment_mask()), [base_mask] "i"(~L.segment_mask()),
          [run_bits] "i"(L.run_bits()), [to_word] "i"(L.run_shift - 3),
          [local] "i"(L.local_free_offset)
        : "x9", "x10", "x11", "cc", "memory"
        : miss);
    return true;
  miss:
    return false;
  }
};

}  // namespace mpcalloc::arch
