// What differs per CPU, behind one interface: the thread key, the free fast path's hit, the
// indirect call to the chosen free, the spin pause.
// Layer arch, the lowest: every layer may include it; it includes no other layer.
#pragma once
#include <concepts>
#include <cstddef>

#include "arch/generic.h"
#include "arch/run_table_layout.h"

// MPCALLOC_ARCH_GENERIC=1 builds the portable versions on any CPU (to test them).
#if defined(MPCALLOC_ARCH_GENERIC) && MPCALLOC_ARCH_GENERIC
#elif defined(__x86_64__)
#include "arch/x86_64.h"
#elif defined(__aarch64__)
#include "arch/aarch64.h"
#endif

namespace mpcalloc::arch {

static_assert(sizeof(void*) == 8 && sizeof(size_t) == 8, "mpcalloc needs a 64-bit target");

// A layout for checking the concept (the heap's own is in heap.h).
inline constexpr RunTableLayout kProbeLayout{22, 16, 512};

// What an architecture provides (each header has one struct of static functions).
template <class A>
concept Architecture = requires(void* p) {
  { A::thread_key() } noexcept -> std::same_as<const void*>;
  { A::spin_pause() } noexcept -> std::same_as<void>;
  { A::call_indirect(static_cast<void (*)(void*)>(nullptr), p) } noexcept -> std::same_as<void>;
  { A::template free_to_own_run<kProbeLayout>(p) } noexcept -> std::same_as<bool>;
};

#if defined(MPCALLOC_ARCH_GENERIC) && MPCALLOC_ARCH_GENERIC
using Native = Generic;
#elif defined(__x86_64__)
using Native = X86_64;
#elif defined(__aarch64__)
using Native = Aarch64;
#else
using Native = Generic;
#endif
static_assert(Architecture<Native> && Architecture<Generic>);

// A value unique to the calling thread among live threads, stable for its life, never odd.
[[gnu::always_inline]] inline const void* thread_key() noexcept { return Native::thread_key(); }

// Inside a spin-wait loop: lets the core (and its SMT sibling) breathe.
[[gnu::always_inline]] inline void spin_pause() noexcept { Native::spin_pause(); }

// fn(arg) through a function pointer, usually as a tail call (the exported free's jump).
[[gnu::always_inline]] inline void call_indirect(void (*fn)(void*), void* arg) noexcept {
  Native::call_indirect(fn, arg);
}

// The free fast path's hit (see Generic::free_to_own_run): true when p went on its run's
// local free list because the calling thread owns the run.
template <RunTableLayout L>
[[gnu::always_inline]] inline bool free_to_own_run(void* p) noexcept {
  return Native::template free_to_own_run<L>(p);
}

}  // namespace mpcalloc::arch
