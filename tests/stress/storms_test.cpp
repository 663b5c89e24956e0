// Process and thread storms: fork from a process with 8 allocating threads (a deadlock fails by
// timeout instead of hanging), 10,000-thread churn with blocks freed by other threads than
// their (possibly exited) owner, and dlopen / dlclose of a library that allocates in its
// constructor and frees in its destructor. Links the override library: plain malloc is ours.
//
// Long mode: `storms_test --long` (1000 forks, 100,000 threads, 1000 dlopens), or set
// STORMS_FORK_ROUNDS / STORMS_THREAD_CHURN / STORMS_DLOPEN_ROUNDS.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "mpcalloc/mpcalloc.h"

namespace {

bool g_long = false;

// Under user-mode emulation (qemu-user, cross builds) a fork or a thread creation costs some
// milliseconds: the fork and thread storms are shorter there by default.
#ifndef MPCALLOC_TEST_EMULATED
#define MPCALLOC_TEST_EMULATED 0
#endif
constexpr int kEmulated = MPCALLOC_TEST_EMULATED;

int rounds(const char* env, int ci, int long_mode) {
  const char* e = std::getenv(env);
  if (e != nullptr) return std::atoi(e);
  return g_long ? long_mode : ci;
}

inline unsigned char pat(const void* p, size_t i) {
  return static_cast<unsigned char>((reinterpret_cast<uintptr_t>(p) >> 4) * 13 + i * 7);
}
void stamp(void* p, size_t n) {
  auto* c = static_cast<unsigned char*>(p);
  size_t step = n > 65536 ? 4093 : 1;
  for (size_t i = 0; i < n; i += step) c[i] = pat(p, i);
  c[n - 1] = pat(p, n - 1);
}
bool intact(const void* p, size_t n) {
  const auto* c = static_cast<const unsigned char*>(p);
  size_t step = n > 65536 ? 4093 : 1;
  for (size_t i = 0; i < n; i += step) {
    if (c[i] != pat(p, i)) return false;
  }
  return c[n - 1] == pat(p, n - 1);
}

mpcalloc_stats_t stats() {
  mpcalloc_stats_t s;
  mpcalloc_stats_get(&s);
  return s;
}

// What a forked child does: allocate small, medium and huge blocks (also calloc, realloc
// growing into huge, a thread, and sometimes a grandchild), check them, and exit 0.
// Exit codes: 2 allocation failed, 3 contents wrong, 4 thread or grandchild failed.
[[noreturn]] void child_work(int round) {
  alarm(30);  // a deadlock in the child ends it with SIGALRM
  std::vector<std::pair<void*, size_t>> v;
  for (int k = 0; k < 300; ++k) {
    size_t n = k % 10 == 9 ? static_cast<size_t>(k) * 1711 + 1 : static_cast<size_t>(k) * 7 + 1;
    void* p = malloc(n);
    if (p == nullptr) _exit(2);
    stamp(p, n);
    v.push_back({p, n});
  }
  size_t hn = (size_t{5} << 20) + static_cast<size_t>(round);
  void* h = malloc(hn);
  void* z = calloc(1, size_t{3} << 20);
  if (h == nullptr || z == nullptr) _exit(2);
  stamp(h, hn);
  const auto* zc = static_cast<const unsigned char*>(z);
  for (size_t i = 0; i < (size_t{3} << 20); i += 4096) {
    if (zc[i] != 0) _exit(3);
  }
  void* g = malloc(1000);
  if (g == nullptr) _exit(2);
  stamp(g, 1000);
  void* g2 = realloc(g, size_t{9} << 20);  // grows across kinds into a huge block
  if (g2 == nullptr) _exit(2);
  for (size_t i = 0; i < 1000; ++i) {
    if (static_cast<unsigned char*>(g2)[i] != pat(g, i)) _exit(3);
  }
  for (auto& [p, n] : v) {
    if (!intact(p, n)) _exit(3);
    free(p);
  }
  if (!intact(h, hn)) _exit(3);
  free(h);
  free(z);
  free(g2);
  // Threads work in the child, and the child frees what the thread allocated. Not under
  // qemu-user 7.2: a thread started in a child forked from a multi-threaded process aborts the
  // emulator itself (its plugin table still holds the parent's vCPUs: "qemu_plugin_vcpu_init_hook:
  // assertion failed").
  if (!kEmulated) {
    void* from_thread = nullptr;
    std::thread([&] {
      free(malloc(1000));
      from_thread = malloc(5000);
      stamp(from_thread, 5000);
    }).join();
    if (from_thread == nullptr || !intact(from_thread, 5000)) _exit(4);
    free(from_thread);
  }
  if (round % 10 == 0) {  // a grandchild forked from the (single-threaded) child
    pid_t gc = fork();
    if (gc == 0) {
      void* p = malloc(70000);
      free(p);
      _exit(p != nullptr ? 0 : 2);
    }
    int st = 0;
    if (gc < 0 || waitpid(gc, &st, 0) != gc || !WIFEXITED(st) || WEXITSTATUS(st) != 0) _exit(4);
  }
  _exit(0);
}

extern "C" void on_parent_timeout(int) {
  const char msg[] = "storms: timed out waiting (deadlock?)\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(70);
}

}  // namespace

TEST(Storms, ForkFromEightAllocatingThreads) {
  const int forks = rounds("STORMS_FORK_ROUNDS", kEmulated ? 20 : 100, 1000);
  std::atomic<bool> stop{false};
  std::atomic<long> damaged{0};
  std::atomic<long> allocs{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      unsigned s = static_cast<unsigned>(t) + 1;
      std::vector<std::pair<void*, size_t>> keep(64, {nullptr, 0});
      while (!stop.load(std::memory_order_relaxed)) {
        unsigned r = static_cast<unsigned>(rand_r(&s));
        size_t n = r % 100 < 85    ? static_cast<size_t>(rand_r(&s)) % 2000 + 1
                   : r % 100 < 98 ? static_cast<size_t>(rand_r(&s)) % 500000 + 1
                                  : static_cast<size_t>(rand_r(&s)) % (6 << 20) + 1;
        auto& slot = keep[static_cast<size_t>(rand_r(&s)) % keep.size()];
        if (slot.first != nullptr) {
          if (!intact(slot.first, slot.second)) ++damaged;
          free(slot.first);
        }
        slot = {malloc(n), n};
        if (slot.first == nullptr) {
          ++damaged;
          slot.second = 0;
          continue;
        }
        stamp(slot.first, n);
        // Busy, but leaving the children some of the (few) cores: a short pause now and then.
        if ((allocs.fetch_add(1, std::memory_order_relaxed) & 127) == 0) usleep(500);
      }
      for (auto& [p, n] : keep) {
        if (p != nullptr && !intact(p, n)) ++damaged;
        free(p);
      }
    });
  }
  while (allocs.load() < 1000) std::this_thread::yield();  // the threads are busy
  mpcalloc_stats_t before = stats();

  // The parent waits with a timeout: a deadlock in fork (atfork handlers) or in a child fails.
  struct sigaction sa = {}, old_sa = {};
  sa.sa_handler = on_parent_timeout;
  sigaction(SIGALRM, &sa, &old_sa);
  alarm(static_cast<unsigned>(60 + 2 * forks));  // generous: a guard against deadlock only
  int bad = 0;
  int first_bad_status = 0;
  for (int i = 0; i < forks; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) child_work(i);
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      if (bad++ == 0) first_bad_status = st;
    }
  }
  alarm(0);
  sigaction(SIGALRM, &old_sa, nullptr);
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad, 0) << "first failing child: status " << first_bad_status
                    << (WIFSIGNALED(first_bad_status) ? " (signal)" : " (exit code)");
  EXPECT_EQ(damaged.load(), 0);
  // The parent does not leak across the forks: mapped memory stays bounded.
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_t after = stats();
  EXPECT_LT(after.mapped_bytes, before.mapped_bytes + (size_t{64} << 20))
      << "before " << before.mapped_bytes << " after " << after.mapped_bytes;
}

TEST(Storms, TenThousandThreadsChurn) {
  const int total = rounds("STORMS_THREAD_CHURN", kEmulated ? 1000 : 10000, 100000);
  constexpr int kBatch = 32;
  std::mutex mu;
  std::vector<std::pair<void*, size_t>> handed;  // freed later by other threads
  // Warm up so the baseline includes the main thread's heap and a few segments.
  free(malloc(100));
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_t before = stats();
  std::atomic<long> bad{0};
  for (int done = 0; done < total; done += kBatch) {
    std::vector<std::thread> ts;
    ts.reserve(kBatch);
    for (int t = 0; t < kBatch; ++t) {
      ts.emplace_back([&, t, done] {
        std::pair<void*, size_t> mine[24];
        for (int i = 0; i < 24; ++i) {
          size_t n = i == 23 ? size_t{1} << 20 : static_cast<size_t>(i) * 211 + static_cast<size_t>(t) + 1;
          mine[i] = {malloc(n), n};
          if (mine[i].first == nullptr) {
            ++bad;
            return;
          }
          stamp(mine[i].first, n);
        }
        std::vector<std::pair<void*, size_t>> take;
        {
          std::lock_guard<std::mutex> g(mu);
          take.swap(handed);
          // These outlive this thread: freed by a later thread into a pooled heap.
          handed.push_back(mine[0]);
          handed.push_back(mine[1 + (done / kBatch) % 22]);
        }
        for (auto& [p, n] : take) {
          if (!intact(p, n)) ++bad;
          free(p);
        }
        for (int i = 0; i < 24; ++i) {
          if (i == 0 || i == 1 + (done / kBatch) % 22) continue;
          if (!intact(mine[i].first, mine[i].second)) ++bad;
          free(mine[i].first);
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  for (auto& [p, n] : handed) {
    if (!intact(p, n)) ++bad;
    free(p);
  }
  EXPECT_EQ(bad.load(), 0);
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_t after = stats();
  // Heaps of exited threads are reused: heaps are bounded by concurrency, not by thread count.
  EXPECT_LE(after.heap_count - before.heap_count, static_cast<size_t>(2 * kBatch))
      << "heaps before " << before.heap_count << " after " << after.heap_count;
  // And the memory of 10,000 threads is not kept: mapped memory stays bounded.
  EXPECT_LT(after.mapped_bytes, before.mapped_bytes + (size_t{64} << 20))
      << "before " << before.mapped_bytes << " after " << after.mapped_bytes;
  EXPECT_GT(after.remote_frees, before.remote_frees);
}

TEST(Storms, DlopenDlcloseOfAllocatingLibrary) {
  const int n = rounds("STORMS_DLOPEN_ROUNDS", 100, 1000);
  int expect = 0;
  for (int k = 0; k < 64; ++k) expect += k;
  mpcalloc_stats_t base{};
  for (int i = 0; i < n; ++i) {
    void* h = dlopen(ALLOC_IN_CTOR_LIB, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(h, nullptr) << dlerror();
    auto sum = reinterpret_cast<int (*)()>(dlsym(h, "alloc_in_ctor_sum"));
    ASSERT_NE(sum, nullptr);
    EXPECT_EQ(sum(), expect);
    // A thread started by the library's code allocates and frees through it too.
    auto in_thread = reinterpret_cast<int (*)()>(dlsym(h, "alloc_in_ctor_thread"));
    ASSERT_NE(in_thread, nullptr);
    EXPECT_EQ(in_thread(), 0);
    EXPECT_EQ(dlclose(h), 0);
    if (i == 9) {
      mpcalloc_malloc_trim(0);
      base = stats();
    }
  }
  // The library frees what it allocates: no growth after the first rounds.
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_t after = stats();
  if (n > 10) {
    EXPECT_LT(after.mapped_bytes, base.mapped_bytes + (size_t{16} << 20))
        << "before " << base.mapped_bytes << " after " << after.mapped_bytes;
    EXPECT_EQ(after.huge_count, base.huge_count);
  }
}

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--long") {
      g_long = true;
    } else {
      std::fprintf(stderr, "usage: %s [--long] [gtest options]\n", argv[0]);
      return 2;
    }
  }
  return RUN_ALL_TESTS();
}
