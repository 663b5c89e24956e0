// C++ operator new/delete in every form (plain, array, nothrow, sized, aligned), with
// std::new_handler and std::bad_alloc semantics. The only file built with exceptions.
#include <new>

#include "api/api_common.h"
#include "heap/heap.h"

#if MPCALLOC_OVERRIDE

using namespace mpcalloc;

#define MPCALLOC_NEW_EXPORT __attribute__((visibility("default")))

namespace {

inline void* try_alloc(size_t size, size_t align) {
  return align <= 16 ? heap::malloc_fast(size) : heap::allocate(size, align, false);
}

// Allocation failed: call the new-handler until it succeeds; no handler means bad_alloc.
[[gnu::noinline]] void* new_retry(size_t size, size_t align) {
  for (;;) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
    void* p = try_alloc(size, align);
    if (p != nullptr) return p;
  }
}

[[gnu::noinline]] void* new_retry_nothrow(size_t size, size_t align) noexcept {
  try {
    return new_retry(size, align);
  } catch (...) {
    return nullptr;
  }
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

MPCALLOC_NEW_EXPORT void operator delete(void* p) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, size_t) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, size_t) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, std::align_val_t) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { heap::free_fast(p); }
MPCALLOC_NEW_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { heap::free_fast(p); }

#endif
