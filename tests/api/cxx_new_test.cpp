// C++ operator new/delete in every form, std::bad_alloc and std::new_handler semantics, with
// libmpcalloc.so providing the operators (override face only).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <set>
#include <sys/mman.h>
#include <sys/resource.h>
#include <vector>

#include "faces.h"

// The point of these calls is to throw; their results are never used.
#pragma GCC diagnostic ignored "-Wunused-result"

namespace {

struct alignas(64) Line {
  char c[64];
};
struct alignas(4096) Page {
  char c[100];
};
struct alignas(256) Tagged {
  int v = 42;
  ~Tagged() { v = 0; }
};

// Is p a block of mpcalloc's? Its usable size is only defined for our blocks; a huge block
// shows in the stats.
bool huge_is_ours(size_t n, void* (*alloc)(size_t), void (*release)(void*)) {
  mpcalloc_stats_t before = stats_now();
  void* p = alloc(n);
  bool ours = stats_now().huge_count == before.huge_count + 1 && mpcalloc_malloc_usable_size(p) >= n;
  release(p);
  return ours && stats_now().huge_count == before.huge_count;
}

int g_handler_calls = 0;
void throwing_on_third_call() {
  if (++g_handler_calls == 3) throw std::bad_alloc();
}
void* g_reserve = nullptr;
void release_reserve_and_uninstall() {
  ++g_handler_calls;
  ::operator delete(g_reserve);
  g_reserve = nullptr;
  std::set_new_handler(nullptr);
}

}  // namespace

TEST(CxxNew, PlainArrayNothrowAndSizedDelete) {
  int* a = new int(7);
  EXPECT_EQ(*a, 7);
  delete a;
  auto* arr = new double[1000];
  for (int i = 0; i < 1000; ++i) arr[i] = i;
  EXPECT_EQ(arr[999], 999.0);
  delete[] arr;
  for (size_t n : {size_t{1}, size_t{100}, size_t{3000}, size_t{70000}, 3 * kMiB}) {
    void* p = ::operator new(n, std::nothrow);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned(p, 16));
    EXPECT_GE(mpcalloc_malloc_usable_size(p), n);
    std::memset(p, 1, n);
    ::operator delete(p, std::nothrow);
    p = ::operator new[](n, std::nothrow);
    ASSERT_NE(p, nullptr);
    std::memset(p, 2, n);
    ::operator delete[](p, std::nothrow);
    p = ::operator new(n);
    std::memset(p, 3, n);
    ::operator delete(p, n);
    p = ::operator new[](n);
    std::memset(p, 4, n);
    ::operator delete[](p, n);
  }
}

TEST(CxxNew, ZeroSizeNewGivesUniquePointers) {
  // Every live zero-size object has its own address.
  std::set<void*> seen;
  std::vector<void*> singles, arrays;
  for (int i = 0; i < 50; ++i) {
    void* p = ::operator new(opaque(0));
    void* q = ::operator new[](opaque(0));
    ASSERT_NE(p, nullptr);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(seen.insert(p).second);
    EXPECT_TRUE(seen.insert(q).second);
    singles.push_back(p);
    arrays.push_back(q);
  }
  for (void* p : singles) ::operator delete(p);
  for (void* q : arrays) ::operator delete[](q);
}

TEST(CxxNew, OperatorsAreOurs) {
  EXPECT_TRUE(huge_is_ours(5 * kMiB, [](size_t n) { return ::operator new(n); },
                           [](void* p) { ::operator delete(p); }));
  EXPECT_TRUE(huge_is_ours(5 * kMiB, [](size_t n) { return ::operator new[](n); },
                           [](void* p) { ::operator delete[](p); }));
  EXPECT_TRUE(huge_is_ours(5 * kMiB, [](size_t n) { return ::operator new(n, std::nothrow); },
                           [](void* p) { ::operator delete(p, std::nothrow); }));
  EXPECT_TRUE(huge_is_ours(5 * kMiB, [](size_t n) { return ::operator new(n, std::align_val_t(4096)); },
                           [](void* p) { ::operator delete(p, std::align_val_t(4096)); }));
  // A std::vector's buffer too.
  mpcalloc_stats_t before = stats_now();
  {
    std::vector<char> v(6 * kMiB);
    EXPECT_EQ(stats_now().huge_count, before.huge_count + 1);
  }
  EXPECT_EQ(stats_now().huge_count, before.huge_count);
}

TEST(CxxNew, AlignedForms) {
  auto* l = new Line;
  EXPECT_TRUE(aligned(l, 64));
  delete l;
  auto* ls = new Line[17];
  EXPECT_TRUE(aligned(ls, 64));
  delete[] ls;
  auto* pg = new Page[3];
  EXPECT_TRUE(aligned(pg, 4096));
  delete[] pg;
  auto* pg1 = new Page;
  EXPECT_TRUE(aligned(pg1, 4096));
  delete pg1;
  // Arrays of a type with a destructor carry a cookie: the array start is still aligned.
  auto* tg = new Tagged[5];
  EXPECT_TRUE(aligned(tg, 256));
  EXPECT_EQ(tg[4].v, 42);
  delete[] tg;
  auto* nt = new (std::nothrow) Page;
  ASSERT_NE(nt, nullptr);
  EXPECT_TRUE(aligned(nt, 4096));
  delete nt;
  for (size_t a : {size_t{32}, size_t{64}, size_t{256}, size_t{4096}, size_t{1} << 16,
                   size_t{1} << 21, size_t{1} << 23}) {
    for (size_t n : {size_t{1}, size_t{1000}, size_t{50000}, 5 * kMiB}) {
      void* p = ::operator new(n, std::align_val_t(a));
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      EXPECT_GE(mpcalloc_malloc_usable_size(p), n);
      std::memset(p, 1, n);
      ::operator delete(p, n, std::align_val_t(a));
      p = ::operator new[](n, std::align_val_t(a));
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      std::memset(p, 2, n);
      ::operator delete[](p, n, std::align_val_t(a));
      p = ::operator new(n, std::align_val_t(a), std::nothrow);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      ::operator delete(p, std::align_val_t(a), std::nothrow);
      p = ::operator new[](n, std::align_val_t(a), std::nothrow);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      ::operator delete[](p, std::align_val_t(a));
    }
  }
}

TEST(CxxNew, ImpossibleRequestThrowsBadAlloc) {
  std::set_new_handler(nullptr);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX)), std::bad_alloc);
  EXPECT_THROW(::operator new[](opaque(SIZE_MAX - 64)), std::bad_alloc);
  EXPECT_THROW(::operator new(opaque(size_t{1} << 47)), std::bad_alloc);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2), std::align_val_t(64)), std::bad_alloc);
  EXPECT_THROW(::operator new[](opaque(SIZE_MAX / 2), std::align_val_t(1 << 21)), std::bad_alloc);
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(::operator new[](opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::align_val_t(128), std::nothrow), nullptr);
  EXPECT_EQ(::operator new[](opaque(SIZE_MAX / 2), std::align_val_t(128), std::nothrow), nullptr);
  // new-expressions of arrays whose size overflows throw too (std::bad_array_new_length is a
  // bad_alloc).
  volatile size_t count = SIZE_MAX / 8;
  EXPECT_THROW((void)new Line[count], std::bad_alloc);
  // And the allocator is fine afterwards.
  void* p = ::operator new(100);
  ::operator delete(p);
}

TEST(CxxNew, NewHandlerIsCalledUntilItThrows) {
  g_handler_calls = 0;
  std::set_new_handler(throwing_on_third_call);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 3);
  g_handler_calls = 0;
  EXPECT_THROW(::operator new[](opaque(SIZE_MAX / 2), std::align_val_t(4096)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 3);
  // A nothrow new calls the handler the same way and turns its bad_alloc into nullptr.
  g_handler_calls = 0;
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 3);
  g_handler_calls = 0;
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::align_val_t(64), std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 3);
  std::set_new_handler(nullptr);
}

TEST(CxxNew, NewHandlerThatUninstallsItselfLeadsToBadAlloc) {
  g_handler_calls = 0;
  g_reserve = ::operator new(1 << 20);
  std::set_new_handler(release_reserve_and_uninstall);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 1);
  EXPECT_EQ(g_reserve, nullptr);
  EXPECT_EQ(std::get_new_handler(), nullptr);
  // nothrow: handler called once, then no handler: nullptr.
  g_handler_calls = 0;
  g_reserve = ::operator new(1 << 20);
  std::set_new_handler(release_reserve_and_uninstall);
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 1);
  EXPECT_EQ(g_reserve, nullptr);
}

namespace {
// Virtual memory of this process now, from /proc/self/statm (pages).
size_t vm_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long pages = 0;
  int got = std::fscanf(f, "%lu", &pages);
  std::fclose(f);
  return got == 1 ? pages * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}
}  // namespace

TEST(CxxNew, NewHandlerThatFreesAReserveLetsTheAllocationSucceed) {
  // Under an address-space limit that leaves room for one 256 MiB block, a reserve of that
  // size makes the next 256 MiB new fail; the handler frees the reserve and uninstalls
  // itself, and the retried allocation must then succeed (the freed block is reused, from
  // the cache or the OS).
  constexpr size_t kBlock = 256 * kMiB;
  mpcalloc_malloc_trim(0);
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_AS, &old), 0);
  size_t vm = vm_bytes();
  ASSERT_GT(vm, 0u);
  struct rlimit lim = old;
  lim.rlim_cur = vm + kBlock + 128 * kMiB;  // room for one block and some slack, not two
  if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < lim.rlim_cur) GTEST_SKIP() << "RLIMIT_AS already low";
  ASSERT_EQ(setrlimit(RLIMIT_AS, &lim), 0);
  // User-mode emulation (qemu-user ignores RLIMIT_AS, so as not to limit itself) accepts the
  // limit without enforcing it: an address range as large as the limit must be refused.
  void* probe = mmap(nullptr, lim.rlim_cur, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (probe != MAP_FAILED) {
    munmap(probe, lim.rlim_cur);
    ASSERT_EQ(setrlimit(RLIMIT_AS, &old), 0);
    GTEST_SKIP() << "RLIMIT_AS is not enforced here (user-mode emulation?)";
  }
  g_handler_calls = 0;
  g_reserve = ::operator new(kBlock, std::nothrow);
  void* p = nullptr;
  bool threw = false;
  if (g_reserve != nullptr) {
    std::memset(g_reserve, 1, 4096);
    std::set_new_handler(release_reserve_and_uninstall);
    try {
      p = ::operator new(opaque(kBlock));
    } catch (const std::bad_alloc&) {
      threw = true;
    }
  }
  ASSERT_EQ(setrlimit(RLIMIT_AS, &old), 0);  // restore before any assertion can bail out
  std::set_new_handler(nullptr);
  ASSERT_NE(g_reserve == nullptr && g_handler_calls == 0, true) << "reserve could not be made";
  EXPECT_FALSE(threw);
  EXPECT_EQ(g_handler_calls, 1) << "the first attempt should have failed under the limit";
  EXPECT_EQ(g_reserve, nullptr);
  ASSERT_NE(p, nullptr);
  std::memset(p, 2, kBlock);
  ::operator delete(p, kBlock);
}

TEST(CxxNew, StandardContainersWork) {
  std::vector<std::vector<int>> v;
  for (int i = 0; i < 1000; ++i) {
    v.emplace_back(static_cast<size_t>(i), i);
  }
  long sum = 0;
  for (auto& x : v) {
    for (int y : x) sum += y;
  }
  EXPECT_EQ(sum, 332833500L);
}
