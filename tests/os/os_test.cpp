// Layer os: mappings, remapping, discard, fault injection, messages, environment, clock.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "os/os_env.h"
#include "os/os_memory.h"
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

TEST(OsEnv, ClockIsMonotonic) {
  uint64_t a = os::now_ms();
  uint64_t b = os::now_ms();
  EXPECT_GE(b, a);
  EXPECT_GT(a, 0u);
}
