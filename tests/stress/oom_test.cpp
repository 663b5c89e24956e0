// Out of memory: with RLIMIT_AS lowered (in a child process) every entry point fails cleanly
// for a request that cannot fit (NULL + ENOMEM; posix_memalign returns ENOMEM and leaves *out
// alone; new throws std::bad_alloc; nothrow new returns nullptr), the process keeps running, and
// after frees allocation works again.
// Fault injection: mpcalloc_test_fail_os_after(n) makes the n-th next OS call fail; for every n
// in 1..200 a fixed sequence of allocations, reallocs, frees and trims of all size kinds must
// not crash, every failure must be NULL + ENOMEM, every block must keep its contents, calloc
// must still give zeros, and with injection off everything can be freed and allocated again.
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
#include <thread>
#include <unistd.h>
#include <vector>

#include "mpcalloc/mpcalloc.h"

namespace {

// Sizes routed through a volatile: the compiler must neither warn about nor fold them.
size_t opaque(size_t n) {
  volatile size_t v = n;
  return v;
}

// Runs fn in a child process; returns its exit code, or 100 + the signal that killed it.
template <typename Fn>
int in_child(Fn fn) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(240);  // a hang ends the child (SIGALRM) instead of the test run
    _exit(fn());
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) return 100 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

// Inside the child: report the failing line on stderr and exit with a failure code.
#define CHILD_CHECK(cond)                                                         \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "child check failed at line %d: %s (errno %d)\n", __LINE__, \
                   #cond, errno);                                                 \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

size_t vm_size() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Contents: every byte of small blocks; of big ones the first 4 KiB, every 16001st byte (about
// one page in four: touching every page of big blocks costs page faults, not checks) and the
// last 4 KiB.
template <typename Fn>
void for_each_offset(size_t n, Fn fn) {
  if (n <= 65536) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  for (size_t i = 0; i < 4096; ++i) fn(i);
  for (size_t i = 16001; i < n - 4096; i += 16001) fn(i);
  for (size_t i = n - 4096; i < n; ++i) fn(i);
}
inline unsigned char byte_of(unsigned char v, size_t i) { return static_cast<unsigned char>(v + i * 7); }
void fill(void* p, size_t n, unsigned char v) {
  auto* c = static_cast<unsigned char*>(p);
  for_each_offset(n, [&](size_t i) { c[i] = byte_of(v, i); });
}
bool holds(const void* p, size_t n, unsigned char v) {
  const auto* c = static_cast<const unsigned char*>(p);
  bool ok = true;
  for_each_offset(n, [&](size_t i) { ok = ok && c[i] == byte_of(v, i); });
  return ok;
}
// The first `keep` bytes of a block of `n` bytes filled with v (what realloc keeps): the
// offsets fill() wrote, below keep.
bool holds_prefix(const void* p, size_t keep, size_t n, unsigned char v) {
  const auto* c = static_cast<const unsigned char*>(p);
  bool ok = true;
  for_each_offset(n, [&](size_t i) { ok = ok && (i >= keep || c[i] == byte_of(v, i)); });
  return ok;
}
bool all_zero(const void* p, size_t n) {
  const auto* c = static_cast<const unsigned char*>(p);
  bool ok = true;
  for_each_offset(n, [&](size_t i) { ok = ok && c[i] == 0; });
  return ok;
}

template <typename Fn>
bool throws_bad_alloc(Fn fn) {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    return true;
  }
  return false;
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
    errno = 0;
    CHILD_CHECK(calloc(opaque(big / 16), 16) == nullptr && errno == ENOMEM);

    // realloc grow of a small, a medium and a huge block (the last one would mremap).
    for (size_t n : {size_t{100}, size_t{60000}, size_t{64} << 20}) {
      void* b = malloc(n);
      CHILD_CHECK(b != nullptr);
      fill(b, n, 0x3c);
      errno = 0;
      CHILD_CHECK(realloc(b, opaque(big)) == nullptr && errno == ENOMEM);
      CHILD_CHECK(holds(b, n, 0x3c));  // the original is intact and still ours
      errno = 0;
      CHILD_CHECK(reallocarray(b, opaque(big / 8), 8) == nullptr && errno == ENOMEM);
      CHILD_CHECK(holds(b, n, 0x3c));
      free(b);
    }

    void* p = reinterpret_cast<void*>(0x1);
    CHILD_CHECK(posix_memalign(&p, 64, opaque(big)) == ENOMEM);
    CHILD_CHECK(p == reinterpret_cast<void*>(0x1));  // *out untouched on failure
    CHILD_CHECK(posix_memalign(&p, size_t{1} << 21, opaque(big)) == ENOMEM);
    CHILD_CHECK(p == reinterpret_cast<void*>(0x1));
    errno = 0;
    CHILD_CHECK(aligned_alloc(4096, opaque(big)) == nullptr && errno == ENOMEM);
    errno = 0;
    CHILD_CHECK(memalign(64, opaque(big)) == nullptr && errno == ENOMEM);
    errno = 0;
    CHILD_CHECK(memalign(size_t{1} << 21, opaque(big)) == nullptr && errno == ENOMEM);
    errno = 0;
    CHILD_CHECK(valloc(opaque(big)) == nullptr && errno == ENOMEM);
    errno = 0;
    CHILD_CHECK(pvalloc(opaque(big)) == nullptr && errno == ENOMEM);

    // (A successful call would be freed at once; it must throw.)
    CHILD_CHECK(throws_bad_alloc([&] { ::operator delete(::operator new(opaque(big))); }));
    CHILD_CHECK(throws_bad_alloc([&] { ::operator delete[](::operator new[](opaque(big))); }));
    CHILD_CHECK(throws_bad_alloc([&] {
      std::align_val_t a{4096};
      ::operator delete(::operator new(opaque(big), a), a);
    }));
    CHILD_CHECK(throws_bad_alloc([&] {
      std::align_val_t a{64};
      ::operator delete[](::operator new[](opaque(big), a), a);
    }));
    CHILD_CHECK(throws_bad_alloc([&] { delete[] new char[opaque(big)]; }));
    CHILD_CHECK(::operator new(opaque(big), std::nothrow) == nullptr);
    CHILD_CHECK(::operator new[](opaque(big), std::nothrow) == nullptr);
    CHILD_CHECK(::operator new(opaque(big), std::align_val_t{256}, std::nothrow) == nullptr);

    // Fill memory with blocks of every kind until even small blocks fail; nothing may crash,
    // every failure is NULL + ENOMEM, every block held keeps its contents.
    struct Held {
      void* p;
      size_t n;
      unsigned char v;
    };
    std::vector<Held> held;
    held.reserve(200000);
    const size_t sizes[] = {64, 3000, 100000, 3 << 20, 24, 700};
    bool small_failed = false;
    for (int round = 0; round < 150000 && !small_failed; ++round) {
      size_t n = sizes[round % 6];
      errno = 0;
      void* b = round % 5 == 1 ? calloc(1, n) : malloc(n);
      if (b == nullptr) {
        CHILD_CHECK(errno == ENOMEM);
        small_failed = n <= 64;
        continue;
      }
      if (round % 5 == 1) CHILD_CHECK(all_zero(b, n));
      auto v = static_cast<unsigned char>(round);
      fill(b, n, v);
      held.push_back({b, n, v});
    }
    CHILD_CHECK(small_failed);  // memory really ran out
    CHILD_CHECK(held.size() > 100);
    // While memory is exhausted, the failing entry points still fail cleanly.
    errno = 0;
    CHILD_CHECK(malloc(opaque(big)) == nullptr && errno == ENOMEM);
    void* maybe = ::operator new(opaque(1 << 20), std::nothrow);  // may or may not fit
    ::operator delete(maybe);
    for (Held& h : held) {
      CHILD_CHECK(holds(h.p, h.n, h.v));
      free(h.p);
    }
    free(nullptr);
    malloc_trim(0);

    // Everything works again, up to the limit.
    void* again = malloc(opaque(size_t{128} << 20));
    CHILD_CHECK(again != nullptr);
    fill(again, size_t{128} << 20, 9);
    std::memset(again, 1, size_t{128} << 20);  // every page really usable
    free(again);
    void* s2 = malloc(32);
    CHILD_CHECK(s2 != nullptr);
    free(s2);
    int* arr = new int[1000];
    arr[999] = 1;
    delete[] arr;
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

namespace {

// One step of the fault-injection sequence.
enum class Op { Malloc, Calloc, PosixMemalign, AlignedAlloc, Memalign, Realloc, Free, Trim };
struct Step {
  Op op;
  size_t size;   // bytes (allocations, realloc target)
  size_t align;  // aligned kinds
  int slot;      // which block: allocations write it, Realloc/Free use it
};

// Small, medium and huge blocks of every kind; reallocs that grow within and across kinds
// (huge → bigger huge is the mremap path) and shrink; frees in between and trims (madvise,
// munmap) while blocks are live.
constexpr size_t KiB = 1024, MiB = 1024 * 1024;
const Step kSequence[] = {
    {Op::Malloc, 24, 0, 0},          {Op::Malloc, 700, 0, 1},
    {Op::Malloc, 9000, 0, 2},        {Op::Malloc, 200 * KiB, 0, 3},
    {Op::Malloc, 2 * MiB + 5, 0, 4}, {Op::Malloc, 3 * MiB, 0, 5},
    {Op::Calloc, 6 * MiB, 0, 6},    {Op::Calloc, 3000, 0, 7},
    {Op::Calloc, 300 * KiB, 0, 8},   {Op::PosixMemalign, 100, 4096, 9},
    {Op::PosixMemalign, 3 * MiB, 2 * MiB, 10},
    {Op::AlignedAlloc, 64 * KiB, 64 * KiB, 11},
    {Op::Memalign, 5000, 256, 12},   {Op::Realloc, 600, 0, 0},
    {Op::Realloc, 50 * KiB, 0, 0},   {Op::Realloc, 4 * MiB, 0, 0},
    {Op::Realloc, 12 * MiB, 0, 5},   {Op::Free, 0, 0, 3},
    {Op::Trim, 0, 0, 0},             {Op::Realloc, 1 * MiB, 0, 6},
    {Op::Realloc, 100, 0, 4},        {Op::Free, 0, 0, 1},
    {Op::Free, 0, 0, 8},             {Op::Calloc, 200 * KiB, 0, 3},
    {Op::Calloc, 5 * MiB, 0, 1},     {Op::Realloc, 10 * MiB, 0, 1},
    {Op::Trim, 0, 0, 0},             {Op::Calloc, 300 * KiB, 0, 8},
    {Op::Malloc, 7 * MiB, 0, 13},   {Op::Realloc, 2 * MiB, 0, 13},
    {Op::Realloc, 12 * KiB, 0, 13},  {Op::Malloc, 1, 0, 14},
    {Op::Realloc, 0x10000, 0, 14},   {Op::Free, 0, 0, 6},
    {Op::Calloc, 6 * MiB, 0, 6},
};
constexpr int kBlocks = 15;

struct Slot {
  void* p = nullptr;
  size_t n = 0;
  unsigned char v = 0;
};

struct Tally {
  int failures = 0;  // allocations that returned NULL
  int bad = 0;       // violated expectations
};

#define SEQ_EXPECT(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "fault injection: step %d (%s) failed: %s (errno %d)\n", i, \
                   what, #cond, errno);                                                  \
      ++t.bad;                                                                           \
    }                                                                                    \
  } while (0)

// Runs the sequence once. Checks every result; a failed allocation leaves its slot empty.
void run_sequence(Slot (&slots)[kBlocks], Tally& t, unsigned char salt) {
  int i = 0;
  for (const Step& s : kSequence) {
    ++i;
    Slot& b = slots[s.slot];
    const char* what = "";
    unsigned char v = static_cast<unsigned char>(salt + i * 13 + 1);
    switch (s.op) {
      case Op::Malloc:
      case Op::Calloc:
      case Op::PosixMemalign:
      case Op::AlignedAlloc:
      case Op::Memalign: {
        if (b.p != nullptr) {
          SEQ_EXPECT(holds(b.p, b.n, b.v));
          mpcalloc_free(b.p);
          b = Slot{};
        }
        void* p = nullptr;
        errno = 0;
        if (s.op == Op::Malloc) {
          what = "malloc";
          p = mpcalloc_malloc(s.size);
        } else if (s.op == Op::Calloc) {
          what = "calloc";
          p = mpcalloc_calloc(1, s.size);
        } else if (s.op == Op::PosixMemalign) {
          what = "posix_memalign";
          int rc = mpcalloc_posix_memalign(&p, s.align, s.size);
          SEQ_EXPECT((rc == 0) == (p != nullptr));
          SEQ_EXPECT(rc == 0 || rc == ENOMEM);
          if (rc != 0) errno = ENOMEM;  // the return value is the error here
        } else if (s.op == Op::AlignedAlloc) {
          what = "aligned_alloc";
          p = mpcalloc_aligned_alloc(s.align, s.size);
        } else {
          what = "memalign";
          p = mpcalloc_memalign(s.align, s.size);
        }
        if (p == nullptr) {
          SEQ_EXPECT(errno == ENOMEM);
          ++t.failures;
          break;
        }
        if (s.align != 0) SEQ_EXPECT(reinterpret_cast<uintptr_t>(p) % s.align == 0);
        SEQ_EXPECT(reinterpret_cast<uintptr_t>(p) % 16 == 0);
        SEQ_EXPECT(mpcalloc_malloc_usable_size(p) >= s.size);
        // calloc memory is zero even when an madvise that would have zeroed it failed.
        if (s.op == Op::Calloc) SEQ_EXPECT(all_zero(p, s.size));
        fill(p, s.size, v);
        b = Slot{p, s.size, v};
        break;
      }
      case Op::Realloc: {
        what = "realloc";
        if (b.p == nullptr) break;  // its allocation failed earlier
        errno = 0;
        void* q = mpcalloc_realloc(b.p, s.size);
        if (q == nullptr) {
          SEQ_EXPECT(errno == ENOMEM);
          SEQ_EXPECT(holds(b.p, b.n, b.v));  // the old block is intact
          ++t.failures;
          break;
        }
        size_t keep = b.n < s.size ? b.n : s.size;
        SEQ_EXPECT(holds_prefix(q, keep, b.n, b.v));
        SEQ_EXPECT(reinterpret_cast<uintptr_t>(q) % 16 == 0);
        SEQ_EXPECT(mpcalloc_malloc_usable_size(q) >= s.size);
        fill(q, s.size, v);
        b = Slot{q, s.size, v};
        break;
      }
      case Op::Free:
        what = "free";
        if (b.p != nullptr) {
          SEQ_EXPECT(holds(b.p, b.n, b.v));
          mpcalloc_free(b.p);
          b = Slot{};
        }
        break;
      case Op::Trim:
        what = "trim";
        mpcalloc_malloc_trim(0);
        // Live blocks are untouched by a trim, failed OS calls or not.
        for (Slot& o : slots) {
          if (o.p != nullptr) SEQ_EXPECT(holds(o.p, o.n, o.v));
        }
        break;
    }
  }
}

int free_all(Slot (&slots)[kBlocks], Tally& t) {
  int i = 0;
  const char* what = "final free";
  for (Slot& b : slots) {
    ++i;
    if (b.p == nullptr) continue;
    SEQ_EXPECT(holds(b.p, b.n, b.v));
    mpcalloc_free(b.p);
    b = Slot{};
  }
  return t.bad;
}

}  // namespace

TEST(FaultInjection, SweepOverOsCalls) {
  int rc = in_child([]() -> int {
    int sweeps_with_failures = 0;
    Tally total;
    for (unsigned long n = 1; n <= 200; ++n) {
      mpcalloc_malloc_trim(0);  // caches emptied: the sequence needs the OS again
      Slot slots[kBlocks];
      Tally t;
      mpcalloc_test_fail_os_after(n);
      run_sequence(slots, t, static_cast<unsigned char>(n));
      free_all(slots, t);  // injection may still be armed: frees must cope
      mpcalloc_malloc_trim(0);
      mpcalloc_test_fail_os_after(0);
      if (t.failures > 0) ++sweeps_with_failures;
      total.failures += t.failures;
      total.bad += t.bad;
      if (t.bad != 0) std::fprintf(stderr, "fault injection: n = %lu: %d bad results\n", n, t.bad);
      // With injection off, the same sequence must succeed completely.
      Tally clean;
      run_sequence(slots, clean, static_cast<unsigned char>(n + 101));
      free_all(slots, clean);
      if (clean.failures != 0 || clean.bad != 0) {
        std::fprintf(stderr, "fault injection: after n = %lu: clean run had %d failures, %d bad\n",
                     n, clean.failures, clean.bad);
        return 1;
      }
    }
    std::fprintf(stderr, "fault injection: %d of 200 sweeps saw failures, %d failed calls\n",
                 sweeps_with_failures, total.failures);
    CHILD_CHECK(total.bad == 0);
    CHILD_CHECK(sweeps_with_failures >= 5);  // the injection did bite
    // And the allocator is fully usable afterwards.
    void* p = mpcalloc_malloc(50 << 20);
    CHILD_CHECK(p != nullptr);
    std::memset(p, 1, 50 << 20);
    mpcalloc_free(p);
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// Injection while several threads allocate: failures are clean and nothing is lost.
TEST(FaultInjection, ConcurrentThreadsSeeFailuresCleanly) {
  int rc = in_child([]() -> int {
    for (unsigned long n = 1; n <= 40; n += 3) {
      mpcalloc_malloc_trim(0);
      mpcalloc_test_fail_os_after(n);
      Tally tallies[4];
      std::vector<std::thread> ts;
      for (int k = 0; k < 4; ++k) {
        ts.emplace_back([&tallies, k, n] {
          Slot slots[kBlocks];
          run_sequence(slots, tallies[k], static_cast<unsigned char>(n * 4 + k));
          free_all(slots, tallies[k]);
        });
      }
      for (auto& t : ts) t.join();
      mpcalloc_test_fail_os_after(0);
      for (auto& t : tallies) CHILD_CHECK(t.bad == 0);
    }
    Slot slots[kBlocks];
    Tally clean;
    run_sequence(slots, clean, 7);
    free_all(slots, clean);
    CHILD_CHECK(clean.failures == 0 && clean.bad == 0);
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

// A new thread's first allocations (heap creation, first segment) under injected failures:
// NULL + ENOMEM, no crash, and the thread allocates normally once injection is off.
TEST(FaultInjection, NewThreadBootstrap) {
  int rc = in_child([]() -> int {
    int bad = 0, failed = 0;
    for (unsigned long n = 1; n <= 16; ++n) {
      mpcalloc_malloc_trim(0);
      std::thread t([&bad, &failed, n] {
        mpcalloc_test_fail_os_after(n);
        std::vector<std::pair<void*, size_t>> got;
        for (size_t sz : {size_t{16}, size_t{5000}, size_t{100000}, size_t{3} << 20}) {
          errno = 0;
          void* p = mpcalloc_malloc(sz);
          if (p == nullptr) {
            ++failed;
            if (errno != ENOMEM) ++bad;
            continue;
          }
          std::memset(p, 0x5c, sz);
          got.push_back({p, sz});
        }
        mpcalloc_test_fail_os_after(0);
        for (auto& [p, sz] : got) {
          const auto* c = static_cast<const unsigned char*>(p);
          if (c[0] != 0x5c || c[sz - 1] != 0x5c) ++bad;
          mpcalloc_free(p);
        }
        void* q = mpcalloc_malloc(16);
        if (q == nullptr) ++bad;
        mpcalloc_free(q);
      });
      t.join();
    }
    CHILD_CHECK(bad == 0);
    CHILD_CHECK(failed > 0);  // the injection reached the bootstrap path
    return 0;
  });
  EXPECT_EQ(rc, 0);
}
