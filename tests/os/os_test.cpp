// Layer os: mappings, remapping, discard, fault injection, messages, environment, clock.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <sys/mman.h>

#include "os/os_env.h"
#include "os/os_memory.h"
#include "os/os_numa.h"
#include "os/os_message.h"

using namespace mpcalloc;

TEST(OsMemory, MapIsZeroAndWritable) {
  auto* p = static_cast<unsigned char*>(os::map(1 << 20));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < (1 << 20); i += 4096) ASSERT_EQ(p[i], 0);
  std::memset(p, 0xab, 1 << 20);
  EXPECT_TRUE(os::unmap(p, 1 << 20));
}

TEST(OsMemory, MapAlignedHonoursAlignment) {
  for (size_t a : {size_t{1} << 21, size_t{1} << 22, size_t{1} << 26}) {
    os::MapResult m = os::map_aligned(3 << 20, a);
    ASSERT_NE(m.addr, nullptr);
    EXPECT_TRUE(m.is_zero);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m.addr) % a, 0u) << a;
    std::memset(m.addr, 1, 3 << 20);
    os::unmap(m.addr, 3 << 20);
  }
}

TEST(OsMemory, RemapKeepsContents) {
  auto* p = static_cast<unsigned char*>(os::map(1 << 20));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < (1 << 20); ++i) p[i] = static_cast<unsigned char>(i * 7);
  void* target = os::reserve(4 << 20);
  ASSERT_NE(target, nullptr);
  ASSERT_TRUE(os::remap_to(p, 1 << 20, 2 << 20, target));
  auto* q = static_cast<unsigned char*>(target);
  for (size_t i = 0; i < (1 << 20); ++i) ASSERT_EQ(q[i], static_cast<unsigned char>(i * 7));
  EXPECT_EQ(q[(2 << 20) - 1], 0);  // grown part is fresh
  // Shrinking in place always works.
  EXPECT_TRUE(os::remap_in_place(q, 2 << 20, 1 << 20));
  EXPECT_EQ(q[12345], static_cast<unsigned char>(12345 * 7));
  os::unmap(q, 4 << 20);
}

TEST(OsMemory, DiscardZeroes) {
  auto* p = static_cast<unsigned char*>(os::map(1 << 16));
  std::memset(p, 9, 1 << 16);
  ASSERT_TRUE(os::discard(p, 1 << 16));
  for (size_t i = 0; i < (1 << 16); i += 512) ASSERT_EQ(p[i], 0);
  os::unmap(p, 1 << 16);
}

TEST(OsMemory, FaultInjectionFailsExactlyTheNthCall) {
  os::OsCounters before = os::counters();
  os::fail_after(3);
  void* a = os::map(4096);
  void* b = os::map(4096);
  void* c = os::map(4096);  // the third: fails
  void* d = os::map(4096);  // injection is over
  os::fail_after(0);
  EXPECT_NE(a, nullptr);
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(c, nullptr);
  EXPECT_NE(d, nullptr);
  os::OsCounters after = os::counters();
  EXPECT_EQ(after.mmap_calls - before.mmap_calls, 3u);  // the failed one never reached the kernel
  os::unmap(a, 4096);
  os::unmap(b, 4096);
  os::unmap(d, 4096);
  EXPECT_GE(os::counters().munmap_calls, after.munmap_calls + 3);
}

TEST(OsMessage, FormatsLikePrintf) {
  int x = 0;
  char expect[64];
  std::snprintf(expect, sizeof expect, "%p", static_cast<void*>(&x));
  os::Message m;
  m.hex(reinterpret_cast<uintptr_t>(&x));
  EXPECT_EQ(std::string(m.data(), m.length()), expect);
  os::Message d;
  d.dec(0).text(" ").dec(18446744073709551615ull).text(" ").hex(0);
  EXPECT_EQ(std::string(d.data(), d.length()), "0 18446744073709551615 (nil)");
  os::Message s;
  s.size(100).text(",").size(20480).text(",").size(uint64_t{5} << 30);
  EXPECT_EQ(std::string(s.data(), s.length()), "100 B,20 KiB,5120 MiB");
}

TEST(OsMessage, TruncatesInsteadOfOverflowing) {
  os::Message m;
  for (int i = 0; i < 200; ++i) m.text("0123456789");
  EXPECT_LE(m.length(), 512u);
}

TEST(OsEnv, FindsAndMisses) {
  setenv("MPCALLOC_UNIT_X", "hello", 1);
  ASSERT_NE(os::env_get("MPCALLOC_UNIT_X"), nullptr);
  EXPECT_STREQ(os::env_get("MPCALLOC_UNIT_X"), "hello");
  EXPECT_EQ(os::env_get("MPCALLOC_UNIT"), nullptr);  // prefix is not a match
  EXPECT_EQ(os::env_get("MPCALLOC_UNIT_XY"), nullptr);
  unsetenv("MPCALLOC_UNIT_X");
  EXPECT_EQ(os::env_get("MPCALLOC_UNIT_X"), nullptr);
}

TEST(OsMemory, MapAlignedIsZeroAndDisjointOverRepeatedCalls) {
  // Repeated calls exercise both the hint path and the over-map-and-trim path.
  constexpr size_t kSize = 4 << 20, kAlign = 4 << 20;
  void* got[6];
  for (auto& g : got) {
    os::MapResult m = os::map_aligned(kSize, kAlign);
    ASSERT_NE(m.addr, nullptr);
    ASSERT_TRUE(m.is_zero);
    ASSERT_EQ(reinterpret_cast<uintptr_t>(m.addr) % kAlign, 0u);
    const auto* c = static_cast<const unsigned char*>(m.addr);
    for (size_t i = 0; i < kSize; i += 4096) ASSERT_EQ(c[i] | c[i + 4095], 0) << i;
    std::memset(m.addr, 0x5a, kSize);  // a later mapping must not overlap this one
    g = m.addr;
  }
  for (void* g : got) {
    const auto* c = static_cast<const unsigned char*>(g);
    for (size_t i = 0; i < kSize; i += 4096) ASSERT_EQ(c[i], 0x5a);
  }
  for (void* g : got) EXPECT_TRUE(os::unmap(g, kSize));
}

TEST(OsMemory, RemapInPlaceGrowsIntoAFreeRangeKeepingContents) {
  constexpr size_t kMiB = 1 << 20;
  auto* p = static_cast<unsigned char*>(os::map(2 * kMiB));
  ASSERT_NE(p, nullptr);
  ASSERT_TRUE(os::unmap(p + kMiB, kMiB));  // the range right after p is now free
  for (size_t i = 0; i < kMiB; ++i) p[i] = static_cast<unsigned char>(i * 31 + 1);
  uint64_t mremaps = os::counters().mremap_calls;
  ASSERT_TRUE(os::remap_in_place(p, kMiB, 2 * kMiB));
  EXPECT_EQ(os::counters().mremap_calls, mremaps + 1);
  for (size_t i = 0; i < kMiB; ++i) ASSERT_EQ(p[i], static_cast<unsigned char>(i * 31 + 1));
  for (size_t i = kMiB; i < 2 * kMiB; i += 4096) ASSERT_EQ(p[i], 0);  // new pages are fresh
  p[2 * kMiB - 1] = 1;  // and writable
  os::unmap(p, 2 * kMiB);
}

TEST(OsMemory, RemapInPlaceFailsWhenTheNextRangeIsMapped) {
  constexpr size_t kMiB = 1 << 20;
  auto* p = static_cast<unsigned char*>(os::map(2 * kMiB));
  ASSERT_NE(p, nullptr);
  std::memset(p, 7, 2 * kMiB);
  // Treat the first half as the block: growing it would need the (mapped) second half.
  EXPECT_FALSE(os::remap_in_place(p, kMiB, kMiB + 4096));
  for (size_t i = 0; i < 2 * kMiB; i += 4096) ASSERT_EQ(p[i], 7);  // nothing changed
  os::unmap(p, 2 * kMiB);
}

TEST(OsMemory, RemapToMovesPagesAndTheOldRangeIsGone) {
  constexpr size_t kMiB = 1 << 20;
  auto* p = static_cast<unsigned char*>(os::map(kMiB));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < kMiB; i += 8) std::memcpy(p + i, &i, 8);
  auto* t = static_cast<unsigned char*>(os::reserve(kMiB));
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE(os::remap_to(p, kMiB, kMiB / 2, t));  // move and shrink at once
  for (size_t i = 0; i < kMiB / 2; i += 8) {
    size_t v;
    std::memcpy(&v, t + i, 8);
    ASSERT_EQ(v, i);
  }
  // The old range is no longer mapped: a fixed no-replace mapping there succeeds.
  void* again = mmap(p, kMiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  EXPECT_EQ(again, static_cast<void*>(p));
  if (again != MAP_FAILED) munmap(again, kMiB);
  os::unmap(t, kMiB);
}

TEST(OsMemory, DiscardCountsAndKeepsTheMappingUsable) {
  const size_t pg = os::page_size();
  auto* p = static_cast<unsigned char*>(os::map(4 * pg));
  ASSERT_NE(p, nullptr);
  std::memset(p, 0xcc, 4 * pg);
  uint64_t madv = os::counters().madvise_calls;
  // Only the middle pages: the neighbours keep their contents.
  ASSERT_TRUE(os::discard(p + pg, 2 * pg));
  EXPECT_EQ(os::counters().madvise_calls, madv + 1);
  EXPECT_EQ(p[pg - 1], 0xcc);
  for (size_t i = pg; i < 3 * pg; ++i) ASSERT_EQ(p[i], 0) << i;
  EXPECT_EQ(p[3 * pg], 0xcc);
  p[pg + 904] = 1;
  EXPECT_EQ(p[pg + 904], 1);
  os::unmap(p, 4 * pg);
}

TEST(OsMemory, FaultInjectionCountsEveryKindOfCall) {
  // Countdown 1: the very next call fails, whatever its kind; the one after succeeds.
  os::fail_after(1);
  EXPECT_EQ(os::reserve(4096), nullptr);
  void* r = os::reserve(4096);
  EXPECT_NE(r, nullptr);
  os::unmap(r, 4096);

  auto* p = static_cast<unsigned char*>(os::map(2 << 20));
  ASSERT_NE(p, nullptr);
  p[0] = 42;
  os::fail_after(1);
  EXPECT_FALSE(os::discard(p, 4096));
  EXPECT_EQ(p[0], 42);  // the failed discard did nothing
  os::fail_after(1);
  EXPECT_FALSE(os::remap_in_place(p, 2 << 20, 1 << 20));
  EXPECT_EQ(p[(1 << 20) + 10], 0);  // still mapped: the shrink did not happen
  void* t = os::reserve(1 << 20);
  ASSERT_NE(t, nullptr);
  os::fail_after(1);
  EXPECT_FALSE(os::remap_to(p, 1 << 20, 1 << 20, t));
  EXPECT_EQ(p[0], 42);

  // The countdown spans kinds: map, discard, then the third call (a remap) fails.
  os::fail_after(3);
  void* m = os::map(4096);
  EXPECT_NE(m, nullptr);
  EXPECT_TRUE(os::discard(p, 4096));
  EXPECT_FALSE(os::remap_in_place(p, 2 << 20, 1 << 20));
  EXPECT_TRUE(os::remap_in_place(p, 2 << 20, 1 << 20));  // countdown over
  // unmap is never failed (it is not part of the countdown).
  os::fail_after(1);
  EXPECT_TRUE(os::unmap(m, 4096));
  EXPECT_EQ(os::map(4096), nullptr);  // ... so the countdown was still armed for this one
  os::fail_after(0);
  os::unmap(t, 1 << 20);
  os::unmap(p, 1 << 20);
}

TEST(OsMemory, FaultInjectionZeroDisables) {
  os::fail_after(5);
  os::fail_after(0);
  void* v[8];
  for (auto& x : v) {
    x = os::map(4096);
    EXPECT_NE(x, nullptr);
  }
  for (void* x : v) os::unmap(x, 4096);
}

TEST(OsMessage, HexMatchesPercentPForManyValues) {
  const uintptr_t values[] = {1,           0xf,         0x10,       0xdeadbeef,
                              0x7fffffffffff, uintptr_t{1} << 63, ~uintptr_t{0}, 0xabcdef0123};
  for (uintptr_t v : values) {
    char expect[64];
    std::snprintf(expect, sizeof expect, "%p", reinterpret_cast<void*>(v));
    os::Message m;
    m.hex(v);
    EXPECT_EQ(std::string(m.data(), m.length()), expect) << v;
  }
  char expect[64];
  std::snprintf(expect, sizeof expect, "%p", static_cast<void*>(nullptr));
  os::Message z;
  z.hex(0);
  EXPECT_EQ(std::string(z.data(), z.length()), expect);
}

TEST(OsMessage, DecimalMatchesPrintf) {
  const uint64_t values[] = {0, 9, 10, 99, 100, 4096, 1234567890123ull, ~uint64_t{0}};
  for (uint64_t v : values) {
    char expect[32];
    std::snprintf(expect, sizeof expect, "%llu", static_cast<unsigned long long>(v));
    os::Message m;
    m.dec(v);
    EXPECT_EQ(std::string(m.data(), m.length()), expect);
  }
}

TEST(OsMessage, SizeUnitsSwitchAtTenOfTheNextUnit) {
  auto fmt = [](uint64_t b) {
    os::Message m;
    m.size(b);
    return std::string(m.data(), m.length());
  };
  EXPECT_EQ(fmt(0), "0 B");
  EXPECT_EQ(fmt(10239), "10239 B");
  EXPECT_EQ(fmt(10240), "10 KiB");
  EXPECT_EQ(fmt(uint64_t{10} << 20), "10 MiB");
  EXPECT_EQ(fmt((uint64_t{10} << 20) - 1), "10239 KiB");
  EXPECT_EQ(fmt(uint64_t{10} << 30), "10 GiB");
  EXPECT_EQ(fmt(uint64_t{10} << 40), "10 TiB");
  EXPECT_EQ(fmt(uint64_t{1} << 60), "1048576 TiB");  // TiB is the largest unit
}

TEST(OsMessage, FullBufferKeepsItsPrefixAndIgnoresMore) {
  os::Message m;
  for (int i = 0; i < 60; ++i) m.text("abcdefghij");
  ASSERT_EQ(m.length(), 512u);
  size_t len = m.length();
  m.dec(12345).hex(0xabc).size(1 << 30).text("more");
  EXPECT_EQ(m.length(), len);
  for (size_t i = 0; i < len; ++i) ASSERT_EQ(m.data()[i], "abcdefghij"[i % 10]) << i;
  // A number cut at the boundary keeps its leading digits.
  os::Message n;
  for (int i = 0; i < 51; ++i) n.text("0123456789");  // 510 chars
  n.dec(98765);
  EXPECT_EQ(n.length(), 512u);
  EXPECT_EQ(std::string(n.data() + 510, 2), "98");
}

TEST(OsEnv, EmptyValuesAndValuesWithEquals) {
  setenv("MPCALLOC_UNIT_EMPTY", "", 1);
  setenv("MPCALLOC_UNIT_EQ", "a=b=c", 1);
  ASSERT_NE(os::env_get("MPCALLOC_UNIT_EMPTY"), nullptr);
  EXPECT_STREQ(os::env_get("MPCALLOC_UNIT_EMPTY"), "");
  EXPECT_STREQ(os::env_get("MPCALLOC_UNIT_EQ"), "a=b=c");
  EXPECT_EQ(os::env_get("MPCALLOC_UNIT_E"), nullptr);
  // Updates are seen (no caching in env_get).
  setenv("MPCALLOC_UNIT_EQ", "changed", 1);
  EXPECT_STREQ(os::env_get("MPCALLOC_UNIT_EQ"), "changed");
  unsetenv("MPCALLOC_UNIT_EMPTY");
  unsetenv("MPCALLOC_UNIT_EQ");
  EXPECT_EQ(os::env_get("MPCALLOC_UNIT_EMPTY"), nullptr);
  EXPECT_STREQ(os::env_get("PATH"), getenv("PATH"));
}

TEST(OsEnv, ClockNeverGoesBackAndAdvancesAcrossASleep) {
  uint64_t prev = os::now_ms();
  for (int i = 0; i < 100000; ++i) {
    uint64_t t = os::now_ms();
    ASSERT_GE(t, prev);
    prev = t;
  }
  timespec ts{0, 50 * 1000 * 1000};
  nanosleep(&ts, nullptr);
  EXPECT_GT(os::now_ms(), prev);  // only a direction, not a duration
}

TEST(OsNuma, IdListsParseLikeTheKernelWritesThem) {
  uint64_t bits[2] = {};
  ASSERT_TRUE(os::parse_id_list("0-3,8-11,64\n", bits, 128));
  EXPECT_EQ(bits[0], 0xf0full);
  EXPECT_EQ(bits[1], 1ull);
  uint64_t one = 0;
  ASSERT_TRUE(os::parse_id_list("5", &one, 64));
  EXPECT_EQ(one, 1ull << 5);
  uint64_t clipped = 0;
  ASSERT_TRUE(os::parse_id_list("62-70", &clipped, 64)) << "ids past the bitmap are ignored";
  EXPECT_EQ(clipped, 3ull << 62);
  for (const char* bad : {"", "\n", "a", "3-", "5-2", "1,,2", "1 2", "-1"}) {
    uint64_t b = 0;
    EXPECT_FALSE(os::parse_id_list(bad, &b, 64)) << '"' << bad << '"';
  }
}

TEST(OsNuma, TopologyOfThisMachine) {
  // Whatever the machine: at least one node, online mask consistent with the count, the
  // calling thread's CPU on an online node (when NUMA is there at all).
  int nodes = os::numa_node_count();
  ASSERT_GE(nodes, 1);
  EXPECT_EQ(__builtin_popcountll(os::numa_online_mask()), nodes);
  EXPECT_NE(os::numa_memory_mask() & os::numa_online_mask(), 0u);
  int current = os::numa_current_node();
  ASSERT_GE(current, 0);
  EXPECT_TRUE((os::numa_online_mask() >> current) & 1);
  if (nodes == 1) {
    EXPECT_EQ(os::numa_thread_node(), -1) << "one node: no thread is bound";
  }
}

TEST(OsMemory, PageSizeIsTheSystems) {
  EXPECT_EQ(os::page_size(), static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_GE(os::page_size(), os::kMinPageSize);
  EXPECT_LE(os::page_size(), os::kMaxPageSize);
}
