// What only the override face has: glibc's internal aliases, mallinfo, and proof that the
// process's malloc is mpcalloc.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
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
  mpcalloc_stats_t before, after;
  mpcalloc_stats_get(&before);
  void* p = malloc(opaque(40) << 20);
  mpcalloc_stats_get(&after);
  EXPECT_EQ(after.huge_count, before.huge_count + 1);
  // A pointer from plain malloc is known to the mpcalloc_ face and vice versa.
  EXPECT_GE(mpcalloc_malloc_usable_size(p), size_t{40} << 20);
  mpcalloc_free(p);
  void* q = mpcalloc_malloc(100);
  EXPECT_GE(malloc_usable_size(q), 100u);
  free(q);
}

TEST(Override, LibcAliases) {
  auto* p = static_cast<char*>(__libc_malloc(100));
  ASSERT_NE(p, nullptr);
  std::memset(p, 7, 100);
  p = static_cast<char*>(__libc_realloc(p, 100000));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p[99], 7);
  __libc_free(p);
  auto* z = static_cast<unsigned char*>(__libc_calloc(10, 100));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(z[i], 0);
  __libc_free(z);
  void* a = __libc_memalign(512, 100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 512, 0u);
  __libc_free(a);
  EXPECT_GE(mpcalloc_malloc_usable_size(a == nullptr ? nullptr : malloc(1)), 1u);
}

TEST(Override, MallinfoReportsOurMemory) {
  void* p = malloc(opaque(8) << 20);
  void* q = malloc(1000);
  struct mallinfo2 mi = mallinfo2();
  EXPECT_GT(mi.arena + mi.hblkhd, size_t{8} << 20);
  EXPECT_GE(mi.hblks, 1u);
  EXPECT_GE(mi.hblkhd, size_t{8} << 20);
  EXPECT_GT(mi.uordblks, 0u);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo old = mallinfo();
#pragma GCC diagnostic pop
  EXPECT_GT(old.hblkhd, 0);
  free(p);
  free(q);
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
  EXPECT_EQ(mpcalloc_option_get("check"), 0);
  EXPECT_GT(mpcalloc_option_get("cache_max"), 0);
  EXPECT_EQ(mpcalloc_option_get("no_such_option"), -1);
  EXPECT_EQ(mpcalloc_option_get(nullptr), -1);
}
