// Layer source: no address range leaves the process while the registry still names a segment
// in it. The kernel may hand a released range to another thread's new segment the moment
// munmap/mremap returns; a registration cleared after that call clears the new segment's, and
// checked frees of its blocks then report "invalid free" (issue 9).
// This binary interposes munmap and mremap (the library calls libc's symbols, so the
// executable's definitions win) and checks the registry at the instant of every release.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "source/block_source.h"

using namespace mpcalloc::source;

namespace {
constexpr size_t kMiB = size_t{1} << 20;
std::atomic<uintptr_t> g_violation{0};
std::atomic<unsigned> g_munmaps{0}, g_mremaps{0}, g_moves{0};

// A released range [from, to): none of its segment bases may still be registered.
void check_released(uintptr_t from, uintptr_t to) {
  for (uintptr_t b = (from + kSegmentMask) & ~kSegmentMask; b < to; b += kSegmentSize) {
    if (is_registered(b)) {
      uintptr_t expected = 0;
      g_violation.compare_exchange_strong(expected, b);
    }
  }
}
}  // namespace

std::atomic<bool> g_fail_next_munmap{false};

extern "C" int munmap(void* addr, size_t len) {
  g_munmaps.fetch_add(1);
  if (g_fail_next_munmap.exchange(false)) {
    errno = ENOMEM;  // what the kernel says when a split would pass vm.max_map_count
    return -1;
  }
  uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  check_released(a, a + len);
  return static_cast<int>(syscall(SYS_munmap, addr, len));
}

extern "C" void* mremap(void* old, size_t old_size, size_t new_size, int flags, ...) {
  void* target = nullptr;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    target = va_arg(ap, void*);
    va_end(ap);
  }
  g_mremaps.fetch_add(1);
  uintptr_t a = reinterpret_cast<uintptr_t>(old);
  if ((flags & MREMAP_MAYMOVE) || (flags == 0 && new_size == old_size)) {
    // A move, or the library's announcement of one (a same-size no-op that hooks report as the
    // old range leaving; the move itself follows by the kernel call).
    g_moves.fetch_add(1);
    check_released(a, a + old_size);  // the whole old range may be vacated
  } else if (new_size < old_size) {
    check_released(a + new_size, a + old_size);
  }
  long r = syscall(SYS_mremap, old, old_size, new_size, flags, target);
  return r < 0 && r > -4096 ? MAP_FAILED : reinterpret_cast<void*>(r);
}

TEST(ReleaseOrder, MovedHugeBlockIsUnregisteredBeforeItsOldRangeGoes) {
  configure({256 * kMiB, 60000, 0});
  trim_cache();
  g_violation.store(0);
  unsigned moves0 = g_moves.load();
  for (int round = 0; round < 8; ++round) {
    SegmentHeader* h = acquire_huge(2 * kMiB + 4096 * round, false, 0);
    ASSERT_NE(h, nullptr);
    uintptr_t base = segment_base(h);
    // Occupy the page after the block so growth in place is impossible: resize must move.
    void* guard = syscall(SYS_mmap, base + h->map_size, 4096, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == -1
                      ? nullptr
                      : reinterpret_cast<void*>(base + h->map_size);
    std::memset(reinterpret_cast<void*>(base + 8192), 0x5a, kMiB);
    SegmentHeader* g = resize_huge(h, 24 * kMiB);
    ASSERT_NE(g, nullptr);
    EXPECT_NE(segment_base(g), base) << "the block had to move";
    EXPECT_TRUE(is_registered(segment_base(g)));
    EXPECT_FALSE(is_registered(base));
    EXPECT_EQ(reinterpret_cast<unsigned char*>(segment_base(g) + 8192)[kMiB - 1], 0x5a);
    // Shrink (in place), then back to the cache and out of it.
    g = resize_huge(g, 6 * kMiB);
    ASSERT_NE(g, nullptr);
    release_huge(g);
    if (guard != nullptr) syscall(SYS_munmap, guard, 4096);
  }
  EXPECT_GE(g_moves.load() - moves0, 8u);
  trim_cache();
  EXPECT_EQ(g_violation.load(), 0u) << "segment base 0x" << std::hex << g_violation.load()
                                    << " was still registered when its range was released";
}

TEST(ReleaseOrder, EvictionTrimAndZeroBudgetReleaseUnregisteredRanges) {
  configure({8 * kMiB, 60000, 0});
  trim_cache();
  g_violation.store(0);
  unsigned munmaps0 = g_munmaps.load();
  SegmentHeader* blocks[12];
  for (int i = 0; i < 12; ++i) {
    blocks[i] = i % 3 == 0 ? acquire_segment(SegmentKind::kSmall, nullptr, 0)
                           : acquire_huge((2 + i) * kMiB, false, 0);
    ASSERT_NE(blocks[i], nullptr);
  }
  for (int i = 0; i < 12; ++i) {
    if (i % 3 == 0) release_segment(blocks[i]);
    else release_huge(blocks[i]);  // over the 8 MiB budget: evictions
  }
  trim_cache();
  configure({0, 60000, 0});
  SegmentHeader* h = acquire_huge(5 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  release_huge(h);  // budget 0: unmapped at once
  configure({256 * kMiB, 60000, 0});
  EXPECT_GT(g_munmaps.load() - munmaps0, 8u) << "the library's munmap calls reach the symbol";
  EXPECT_EQ(g_violation.load(), 0u) << "segment base 0x" << std::hex << g_violation.load()
                                    << " was still registered when its range was released";
}

TEST(ReleaseOrder, BlockTheKernelRefusesToUnmapStaysCachedAndCounted) {
  configure({256 * kMiB, 60000, 0});
  trim_cache();
  SegmentHeader* h = acquire_huge(6 * kMiB, false, 0);
  ASSERT_NE(h, nullptr);
  uintptr_t base = segment_base(h);
  size_t size = h->map_size;
  release_huge(h);
  SourceStats before = stats();
  ASSERT_EQ(before.cached_bytes, size);
  g_fail_next_munmap = true;
  EXPECT_EQ(trim_cache(), size);
  SourceStats failed = stats();
  EXPECT_EQ(failed.mapped_bytes, before.mapped_bytes) << "still mapped, still counted";
  EXPECT_EQ(failed.cached_bytes, size) << "back in the cache for a later try";
  EXPECT_EQ(failed.unmap_failures, before.unmap_failures + 1);
  EXPECT_TRUE(is_registered(base));
  // The next trim succeeds.
  trim_cache();
  EXPECT_EQ(stats().mapped_bytes, before.mapped_bytes - size);
  EXPECT_EQ(stats().cached_bytes, 0u);
  EXPECT_FALSE(is_registered(base));
}
