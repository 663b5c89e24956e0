// C++ operator new/delete in every form, std::bad_alloc and std::new_handler semantics, with
// libmpcalloc.so providing the operators.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "faces.h"

// The point of these calls is to throw; their results are never used.
#pragma GCC diagnostic ignored "-Wunused-result"

namespace {
bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

struct alignas(64) Line {
  char c[64];
};
struct alignas(4096) Page {
  char c[100];
};

int g_handler_calls = 0;
void counting_handler() {
  if (++g_handler_calls == 3) throw std::bad_alloc();
}
void* g_reserve = nullptr;
void releasing_handler() {
  ++g_handler_calls;
  std::free(g_reserve);
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
  void* p = ::operator new(100, std::nothrow);
  ASSERT_NE(p, nullptr);
  ::operator delete(p, std::nothrow);
  p = ::operator new[](3000, std::nothrow);
  ASSERT_NE(p, nullptr);
  ::operator delete[](p, std::nothrow);
  p = ::operator new(48);
  ::operator delete(p, size_t{48});
  p = ::operator new[](70000);
  ::operator delete[](p, size_t{70000});
}

TEST(CxxNew, OperatorsAreOurs) {
  void* p = ::operator new(5 << 20);
  mpcalloc_stats_t st;
  mpcalloc_stats_get(&st);
  EXPECT_GE(st.huge_count, 1u) << "operator new did not allocate through mpcalloc";
  EXPECT_GE(mpcalloc_malloc_usable_size(p), size_t{5} << 20);
  ::operator delete(p);
}

TEST(CxxNew, AlignedForms) {
  auto* l = new Line;
  EXPECT_TRUE(aligned(l, 64));
  delete l;
  auto* pg = new Page[3];
  EXPECT_TRUE(aligned(pg, 4096));
  delete[] pg;
  for (size_t a : {size_t{32}, size_t{256}, size_t{4096}, size_t{1} << 21, size_t{1} << 23}) {
    void* p = ::operator new(1000, std::align_val_t(a));
    EXPECT_TRUE(aligned(p, a)) << a;
    std::memset(p, 1, 1000);
    ::operator delete(p, 1000, std::align_val_t(a));
    p = ::operator new[](50000, std::align_val_t(a), std::nothrow);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned(p, a)) << a;
    ::operator delete[](p, std::align_val_t(a), std::nothrow);
  }
}

TEST(CxxNew, ImpossibleRequestThrowsBadAlloc) {
  std::set_new_handler(nullptr);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_THROW(::operator new[](opaque(SIZE_MAX - 64)), std::bad_alloc);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2), std::align_val_t(64)), std::bad_alloc);
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(::operator new[](opaque(SIZE_MAX / 2), std::align_val_t(128), std::nothrow), nullptr);
}

TEST(CxxNew, NewHandlerIsCalledUntilItThrows) {
  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 3);
  // A nothrow new turns the handler's bad_alloc into nullptr.
  g_handler_calls = 0;
  EXPECT_EQ(::operator new(opaque(SIZE_MAX / 2), std::nothrow), nullptr);
  EXPECT_EQ(g_handler_calls, 3);
  std::set_new_handler(nullptr);
}

TEST(CxxNew, NewHandlerThatUninstallsItselfLeadsToBadAlloc) {
  g_handler_calls = 0;
  g_reserve = std::malloc(1 << 20);
  std::set_new_handler(releasing_handler);
  EXPECT_THROW(::operator new(opaque(SIZE_MAX / 2)), std::bad_alloc);
  EXPECT_EQ(g_handler_calls, 1);
  EXPECT_EQ(g_reserve, nullptr);
  EXPECT_EQ(std::get_new_handler(), nullptr);
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
