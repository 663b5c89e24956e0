// The kernel's memory calls (mmap, munmap, mremap, madvise) through libc's symbols, with a fault
// injection hook for tests and call counters. Layer os: callable from every layer above.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::os {

// The smallest page size of the platforms supported (sizes are rounded to at least this).
inline constexpr size_t kMinPageSize = 4096;
// The largest page size the layout supports: small runs are 64 KiB (aarch64 kernels come with
// 4, 16 and 64 KiB pages).
inline constexpr size_t kMaxPageSize = 65536;
// The system's page size (the auxiliary vector's AT_PAGESZ, read once): what madvise, mbind
// and move_pages work in, and what valloc aligns to.
size_t page_size();

struct MapResult {
  void* addr;    // nullptr on failure
  bool is_zero;  // the memory is known to read as zero (fresh anonymous mapping)
};

// Anonymous read/write private mapping; `hint` is only a hint. nullptr on failure.
void* map(size_t size, void* hint = nullptr);
// A mapping of `size` bytes whose start is aligned to `alignment` (a power of two >= page).
MapResult map_aligned(size_t size, size_t alignment);
// Address space only (PROT_NONE), for building aligned targets.
void* reserve(size_t size);
// Fresh read/write pages over [addr, addr+size), a part of our own reservation.
bool map_over_reserved(void* addr, size_t size);
bool unmap(void* addr, size_t size);
// Resize in place (no move); false if the kernel could not.
bool remap_in_place(void* addr, size_t old_size, size_t new_size);
// Move the pages of [addr, addr+old_size) to `target`, resizing to new_size; no copy.
bool remap_to(void* addr, size_t old_size, size_t new_size, void* target);
// Give pages back to the kernel; contents read as zero afterwards.
bool discard(void* addr, size_t size);
// Give pages back to the kernel, to read as zero afterwards (`lazy` false: MADV_DONTNEED), or
// for the kernel to take when it needs memory (`lazy`: MADV_FREE; contents are then undefined
// until written; falls back to MADV_DONTNEED on kernels without it).
bool purge(void* addr, size_t size, bool lazy);
// Asks for transparent huge pages on [addr, addr+size) (on), or for none (off).
bool advise_huge_pages(void* addr, size_t size, bool on);

struct OsCounters {
  uint64_t mmap_calls;
  uint64_t munmap_calls;
  uint64_t mremap_calls;
  uint64_t madvise_calls;
};
OsCounters counters();

// Fault injection: the n-th next call of map/reserve/remap/discard fails (0 = off).
void fail_after(unsigned long n);

}  // namespace mpcalloc::os
