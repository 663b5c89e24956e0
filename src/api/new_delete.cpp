// C++ operator new/delete in every form (plain, array, nothrow, sized, aligned), with
// std::new_handler and std::bad_alloc semantics.
// The library does not depend on libstdc++ (it would cost every C program ~1.6 MB of RSS):
// the C++ runtime functions used here are weak references, present whenever a C++ program
// (the only kind that calls operator new) is running. This file needs no exception support
// of its own: bad_alloc is thrown by libstdc++'s std::__throw_bad_alloc, and the nothrow
// forms that must catch a throwing new-handler delegate to libstdc++'s own nothrow new, which
// calls our throwing new inside its try/catch.
#include <dlfcn.h>
#include <new>
#include <type_traits>

#include "os/os_message.h"

using NewHandler = void (*)();
extern "C" NewHandler mpcalloc_cxx_get_new_handler() noexcept
    __asm__("_ZSt15get_new_handlerv") __attribute__((weak));
extern "C" void mpcalloc_cxx_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv")
    __attribute__((weak));

#include "api/api_common.h"
#include "heap/heap.h"

#if MPCALLOC_OVERRIDE

using namespace mpcalloc;

#define MPCALLOC_NEW_EXPORT __attribute__((visibility("default")))

namespace {

inline void* try_alloc(size_t size, size_t align) {
  return heap::aligned_fast(size, align);
}

[[noreturn]] void throw_bad_alloc() {
  if (mpcalloc_cxx_throw_bad_alloc != nullptr) mpcalloc_cxx_throw_bad_alloc();
  os::Message m;
  m.text("mpcalloc: out of memory in operator new and no C++ runtime to throw std::bad_alloc");
  os::fatal(m);
}

// Allocation failed: call the new-handler until it succeeds; no handler means bad_alloc.
[[gnu::noinline]] void* new_retry(size_t size, size_t align) {
  for (;;) {
    NewHandler handler = mpcalloc_cxx_get_new_handler != nullptr ? mpcalloc_cxx_get_new_handler() : nullptr;
    if (handler == nullptr) throw_bad_alloc();
    handler();
    void* p = try_alloc(size, align);
    if (p != nullptr) return p;
  }
}

// The dlsym names below are mangled for size_t == unsigned long ("m"), as on x86-64 and
// aarch64 Linux (LP64); a target where size_t is unsigned int or long long needs "j" or "y".
static_assert(sizeof(size_t) == sizeof(unsigned long) && std::is_same_v<size_t, unsigned long>,
              "the mangled operator new names assume size_t is unsigned long");
using NothrowNew = void* (*)(size_t, const std::nothrow_t&) noexcept;
using NothrowAlignedNew = void* (*)(size_t, std::align_val_t, const std::nothrow_t&) noexcept;

[[gnu::noinline]] void* new_retry_nothrow(size_t size, size_t align) noexcept {
  if (mpcalloc_cxx_get_new_handler == nullptr || mpcalloc_cxx_get_new_handler() == nullptr) {
    return nullptr;
  }
  // A handler may throw bad_alloc, which a nothrow new must turn into nullptr.
  const std::nothrow_t tag{};
  if (align <= 16) {
    auto next = reinterpret_cast<NothrowNew>(dlsym(RTLD_NEXT, "_ZnwmRKSt9nothrow_t"));
    if (next != nullptr) return next(size, tag);
  } else {
    auto next = reinterpret_cast<NothrowAlignedNew>(dlsym(RTLD_NEXT, "_ZnwmSt11align_val_tRKSt9nothrow_t"));
    if (next != nullptr) return next(size, static_cast<std::align_val_t>(align), tag);
  }
  return new_retry(size, align);
}

inline void* new_impl(size_t size) {
  void* p = heap::malloc_fast(size);
  return __builtin_expect(p != nullptr, 1) ? p : new_retry(size, 16);
}
inline void* new_aligned_impl(size_t size, std::align_val_t al) {
  size_t align = static_cast<size_t>(al);
  void* p = try_alloc(size, align);
  return p != nullptr ? p : new_retry(size, align);
}
inline void* new_nothrow_impl(size_t size, size_t align) noexcept {
  void* p = try_alloc(size, align);
  return p != nullptr ? p : new_retry_nothrow(size, align);
}

}  // namespace

MPCALLOC_NEW_EXPORT void* operator new(size_t n) { return new_impl(n); }
MPCALLOC_NEW_EXPORT void* operator new[](size_t n) { return new_impl(n); }
MPCALLOC_NEW_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_nothrow_impl(n, 16); }
MPCALLOC_NEW_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_nothrow_impl(n, 16); }
MPCALLOC_NEW_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_aligned_impl(n, a); }
MPCALLOC_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_aligned_impl(n, a); }
MPCALLOC_NEW_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow_impl(n, static_cast<size_t>(a));
}
MPCALLOC_NEW_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow_impl(n, static_cast<size_t>(a));
}

MPCALLOC_NEW_EXPORT void operator delete(void* p) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, size_t) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, size_t) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, std::align_val_t) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { heap::free_entry(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { heap::free_entry(p); }

#endif
