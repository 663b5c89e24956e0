// What only the override face has: proof that the process's malloc is mpcalloc (including
// libc's own internal allocations), glibc's internal aliases, mallinfo, stats and options.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <string>
#include <unistd.h>

#include "faces.h"

extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

TEST(Override, MallocIsMpcalloc) {
  mpcalloc_stats_t before = stats_now();
  void* p = opaque_fn(&::malloc)(opaque(64 * kMiB));
  ASSERT_NE(p, nullptr);
  mpcalloc_stats_t after = stats_now();
  EXPECT_EQ(after.huge_count, before.huge_count + 1);
  EXPECT_GE(after.huge_bytes, before.huge_bytes + 64 * kMiB);
  // A pointer from plain malloc is known to the mpcalloc_ face and vice versa.
  EXPECT_GE(mpcalloc_malloc_usable_size(p), 64 * kMiB);
  mpcalloc_free(p);
  EXPECT_EQ(stats_now().huge_count, before.huge_count);
  void* q = mpcalloc_malloc(100);
  EXPECT_GE(opaque_fn(&::malloc_usable_size)(q), 100u);
  opaque_fn(&::free)(q);
}

TEST(Override, LibcInternalAllocationsAreOurs) {
  // strdup, asprintf and getline allocate inside libc; their blocks must be ours (a 40 MiB
  // string is a huge block in our stats) and freeable with our free.
  std::string big(40 * kMiB, 'x');
  mpcalloc_stats_t before = stats_now();
  char* d = strdup(big.c_str());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(stats_now().huge_count, before.huge_count + 1);
  EXPECT_GE(mpcalloc_malloc_usable_size(d), big.size() + 1);
  free(d);
  char* s = nullptr;
  ASSERT_GT(asprintf(&s, "%s-%d", "mpcalloc", 42), 0);
  EXPECT_STREQ(s, "mpcalloc-42");
  EXPECT_GE(mpcalloc_malloc_usable_size(s), 12u);
  free(s);
}

TEST(Override, LibcAliases) {
  mpcalloc_stats_t before = stats_now();
  auto* p = static_cast<char*>(__libc_malloc(100));
  ASSERT_NE(p, nullptr);
  std::memset(p, 7, 100);
  p = static_cast<char*>(__libc_realloc(p, 100000));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p[99], 7);
  EXPECT_GE(mpcalloc_malloc_usable_size(p), 100000u);
  __libc_free(p);
  auto* z = static_cast<unsigned char*>(__libc_calloc(10, 100));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(z[i], 0);
  __libc_free(z);
  void* a = __libc_memalign(512, 100);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 512, 0u);
  EXPECT_GE(mpcalloc_malloc_usable_size(a), 100u);
  __libc_free(a);
  // The aliases are the same allocator: a huge __libc_malloc shows in our stats and can be
  // freed with plain free.
  void* h = __libc_malloc(opaque(48 * kMiB));
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(stats_now().huge_count, before.huge_count + 1);
  free(h);
  EXPECT_EQ(stats_now().huge_count, before.huge_count);
  // Same errors as the standard names.
  errno = 0;
  EXPECT_EQ(__libc_malloc(opaque(SIZE_MAX)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(__libc_calloc(opaque(SIZE_MAX / 2), 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(__libc_realloc(__libc_malloc(10), 0), nullptr);
}

TEST(Override, MallinfoReportsOurMemory) {
  void* p = malloc(opaque(8 * kMiB));
  std::vector<void*> smalls;
  for (int i = 0; i < 100; ++i) smalls.push_back(malloc(1000));
  struct mallinfo2 mi = mallinfo2();
  EXPECT_GT(mi.arena, 0u) << "small blocks live in segments";
  EXPECT_GE(mi.hblks, 1u);
  EXPECT_GE(mi.hblkhd, 8 * kMiB);
  EXPECT_GE(mi.uordblks, 100 * 1000u);
  EXPECT_GE(mi.arena + mi.hblkhd, mi.uordblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
  EXPECT_GT(old.hblkhd, 0);
  EXPECT_GT(old.arena, 0);
  EXPECT_GE(old.hblks, 1);
  free(p);
  for (void* s : smalls) free(s);
  struct mallinfo2 after = mallinfo2();
  EXPECT_LT(after.hblkhd, mi.hblkhd) << "the freed huge block is no longer counted in use";
}

TEST(Override, StatsPrintTextAndJson) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  mpcalloc_stats_print(fds[1], 1);
  mpcalloc_stats_print(fds[1], 0);
  close(fds[1]);
  char buf[8192] = {};
  size_t got = 0;
  ssize_t r;
  while ((r = read(fds[0], buf + got, sizeof(buf) - 1 - got)) > 0) got += static_cast<size_t>(r);
  close(fds[0]);
  std::string s(buf, got);
  EXPECT_NE(s.find("{\"mpcalloc\": {\"mapped_bytes\": "), std::string::npos) << s;
  EXPECT_NE(s.find("\"remote_frees\": "), std::string::npos);
  EXPECT_NE(s.find("mpcalloc:   heap_count = "), std::string::npos);
}

TEST(Override, OptionsByName) {
  const char* check = getenv("MPCALLOC_CHECK");
  EXPECT_EQ(mpcalloc_option_get("check"), check != nullptr && std::strcmp(check, "1") == 0 ? 1 : 0);
  EXPECT_GT(mpcalloc_option_get("cache_max"), 0);
  EXPECT_EQ(mpcalloc_option_get("no_such_option"), -1);
  EXPECT_EQ(mpcalloc_option_get(nullptr), -1);
}
