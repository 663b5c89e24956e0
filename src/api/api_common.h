// Shared by the api files: export macros and the glibc memalign rules. Layer api.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "base/bits.h"
#include "heap/heap.h"

#define MPCALLOC_EXPORT extern "C" __attribute__((visibility("default")))

namespace mpcalloc::api {

// glibc's memalign (and, in glibc 2.36, aligned_alloc): alignments up to 16 are plain
// malloc, a non-power of two is rounded up to the next power of two, and an alignment above
// SIZE_MAX/2+1 is EINVAL.
inline void* memalign_impl(size_t align, size_t size) {
  if (align <= 16) {
    return heap::malloc_fast(size);
  }
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (!base::is_pow2(align)) align = base::next_pow2(align);
  void* p = heap::aligned_fast(size, align);
  if (p == nullptr) errno = ENOMEM;
  return p;
}

}  // namespace mpcalloc::api
