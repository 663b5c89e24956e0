// Valgrind client requests: tell memcheck where mpcalloc's blocks begin and end, so a program
// that keeps mpcalloc's malloc under Valgrind (linked statically, or run with
// --soname-synonyms=somalloc=...) still gets leak and invalid-access reports. Compiled in when
// <valgrind/memcheck.h> is there at build time; each request is a few no-op instructions
// natively, and only checked mode's slow paths make them (the heap turns checked mode on when
// it finds itself under memcheck). Layer os.
#pragma once
#include <cstddef>

#if __has_include(<valgrind/memcheck.h>) && !defined(MPCALLOC_NO_VALGRIND)
#include <valgrind/memcheck.h>
#define MPCALLOC_HAVE_VALGRIND 1
#else
#define MPCALLOC_HAVE_VALGRIND 0
#endif

namespace mpcalloc::os {

#if MPCALLOC_HAVE_VALGRIND

// Under memcheck itself: its "get V bits" request answers 1 there and nothing else does (the
// other tools, callgrind among them, run mpcalloc unchanged).
inline bool on_memcheck() {
  if (RUNNING_ON_VALGRIND == 0) return false;
  char byte = 0, vbits = 0;
  return VALGRIND_GET_VBITS(&byte, &vbits, 1) == 1;
}
// p..p+size becomes a heap block: addressable, undefined unless `zeroed`, tracked for leaks.
inline void vg_block_allocated(const void* p, size_t size, bool zeroed) {
  VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zeroed ? 1 : 0);
}
// The block at p ends: memcheck reports an invalid free here when p is not a block it knows
// (with the caller's stack), and marks the block inaccessible.
inline void vg_block_freed(const void* p) { VALGRIND_FREELIKE_BLOCK(p, 0); }
inline void vg_no_access(const void* p, size_t size) { VALGRIND_MAKE_MEM_NOACCESS(p, size); }
// memcheck reports (with the caller's stack) when p is not addressable, e.g. a freed block.
inline void vg_check_addressable(const void* p) { (void)VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, 1); }
// The allocator's own reads and writes of free blocks and trailers (inaccessible to the
// program) are not the program's errors: the calling thread's reports pause around them.
inline void vg_quiet_begin() { VALGRIND_DISABLE_ERROR_REPORTING; }
inline void vg_quiet_end() { VALGRIND_ENABLE_ERROR_REPORTING; }

#else

inline bool on_memcheck() { return false; }
inline void vg_block_allocated(const void*, size_t, bool) {}
inline void vg_block_freed(const void*) {}
inline void vg_no_access(const void*, size_t) {}
inline void vg_check_addressable(const void*) {}
inline void vg_quiet_begin() {}
inline void vg_quiet_end() {}

#endif

}  // namespace mpcalloc::os
