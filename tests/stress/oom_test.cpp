// Out of memory: with RLIMIT_AS lowered (in a child process) every entry point returns NULL
// with ENOMEM (C++ new throws bad_alloc), the process keeps running, and after frees
// allocation works again. Fault injection: the n-th OS call fails, for every n in a sweep.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <new>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "mpcalloc/mpcalloc.h"

#pragma GCC diagnostic ignored "-Wunused-result"

namespace {

size_t opaque(size_t n) {
  volatile size_t v = n;
  return v;
}

// Runs fn in a child process; returns its exit code (or 100 + signal).
template <typename Fn>
int in_child(Fn fn) {
  fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(120);
    _exit(fn());
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) return 100 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

#define CHILD_CHECK(cond)                                                    \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "child check failed line %d: %s\n", __LINE__, #cond); \
      return 1;                                                              \
    }                                                                        \
  } while (0)

size_t vm_size() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return pages * 4096;
}

}  // namespace

TEST(OutOfMemory, EveryEntryPointFailsCleanlyAndRecovers) {
  int rc = in_child([]() -> int {
    // Room for some work, not for 1 GiB.
    size_t limit = vm_size() + (size_t{256} << 20);
    struct rlimit rl = {limit, limit};
    CHILD_CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    const size_t big = size_t{1} << 30;
    errno = 0;
    CHILD_CHECK(malloc(opaque(big)) == nullptr && errno == ENOMEM);
    errno = 0;
    CHILD_CHECK(calloc(1, opaque(big)) == nullptr && errno == ENOMEM);
    void* small = malloc(100);
    CHILD_CHECK(small != nullptr);
    std::memset(small, 7, 100);
    errno = 0;
    CHILD_CHECK(realloc(small, opaque(big)) == nullptr && errno == ENOMEM);
    CHILD_CHECK(static_cast<unsigned char*>(small)[99] == 7);  // original intact
    void* p = reinterpret_cast<void*>(0x1);
    CHILD_CHECK(posix_memalign(&p, 64, opaque(big)) == ENOMEM && p == reinterpret_cast<void*>(0x1));
    errno = 0;
    CHILD_CHECK(aligned_alloc(4096, opaque(big)) == nullptr && errno == ENOMEM);
    errno = 0;
    CHILD_CHECK(memalign(1 << 21, opaque(big)) == nullptr && errno == ENOMEM);
    errno = 0;
    CHILD_CHECK(valloc(opaque(big)) == nullptr && errno == ENOMEM);
    bool threw = false;
    try {
      ::operator new(opaque(big));
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    CHILD_CHECK(threw);
    CHILD_CHECK(::operator new(opaque(big), std::nothrow) == nullptr);
    // Fill memory with blocks of every kind until it runs out; nothing may crash.
    std::vector<void*> held;
    size_t sizes[] = {64, 3000, 100000, 3 << 20};
    for (int round = 0; round < 100000; ++round) {
      size_t n = sizes[round % 4];
      void* b = malloc(n);
      if (b == nullptr) {
        CHILD_CHECK(errno == ENOMEM);
        if (n == sizes[0]) break;  // even small blocks fail: memory is full
        continue;
      }
      std::memset(b, 0x3c, n < 4096 ? n : 4096);
      held.push_back(b);
    }
    CHILD_CHECK(held.size() > 10);
    for (void* b : held) free(b);
    free(small);
    malloc_trim(0);
    // Everything works again.
    void* again = malloc(100 << 20);
    CHILD_CHECK(again != nullptr);
    std::memset(again, 1, 100 << 20);
    free(again);
    void* s2 = malloc(32);
    CHILD_CHECK(s2 != nullptr);
    free(s2);
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

TEST(FaultInjection, SweepOverOsCalls) {
  int rc = in_child([]() -> int {
    int failures_seen = 0;
    for (unsigned long n = 1; n <= 200; ++n) {
      mpcalloc_malloc_trim(0);  // empty caches so the sequence needs the OS again
      mpcalloc_test_fail_os_after(n);
      std::vector<std::pair<unsigned char*, size_t>> held;
      const size_t sizes[] = {24, 700, 9000, 200000, 2 << 20, 9 << 20, 40 << 20};
      for (int i = 0; i < 60; ++i) {
        size_t sz = sizes[i % 7] + static_cast<size_t>(i);
        errno = 0;
        auto* p = static_cast<unsigned char*>(i % 5 == 4 ? mpcalloc_calloc(1, sz) : mpcalloc_malloc(sz));
        if (p == nullptr) {
          CHILD_CHECK(errno == ENOMEM);
          ++failures_seen;
          continue;
        }
        std::memset(p, static_cast<int>(i), sz < 8192 ? sz : 8192);
        held.push_back({p, sz});
        if (i % 3 == 0) {  // grow one by realloc
          size_t grow = sz * 3;
          auto* q = static_cast<unsigned char*>(mpcalloc_realloc(p, grow));
          if (q == nullptr) {
            CHILD_CHECK(errno == ENOMEM);
            ++failures_seen;
          } else {
            held.back() = {q, grow};
            CHILD_CHECK(q[0] == static_cast<unsigned char>(i));
            std::memset(q, static_cast<int>(i), grow < 8192 ? grow : 8192);
          }
        }
      }
      mpcalloc_test_fail_os_after(0);
      for (size_t k = 0; k < held.size(); ++k) {
        size_t check = held[k].second < 8192 ? held[k].second : 8192;
        unsigned char v = held[k].first[0];
        for (size_t j = 0; j < check; ++j) CHILD_CHECK(held[k].first[j] == v);
        mpcalloc_free(held[k].first);
      }
    }
    CHILD_CHECK(failures_seen > 0);  // the injection did bite
    // And the allocator is fully usable afterwards.
    void* p = mpcalloc_malloc(50 << 20);
    CHILD_CHECK(p != nullptr);
    mpcalloc_free(p);
    return 0;
  });
  EXPECT_EQ(rc, 0);
}
