// Process and thread storms: fork from a process with 8 allocating threads (a deadlock fails
// by timeout instead of hanging), 10,000-thread churn with cross-thread frees, and dlopen /
// dlclose of a library that allocates in its constructor.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <mutex>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "mpcalloc/mpcalloc.h"

namespace {
int env_int(const char* name, int dflt) {
  const char* e = std::getenv(name);
  return e != nullptr ? std::atoi(e) : dflt;
}
}  // namespace

TEST(Storms, ForkFromEightAllocatingThreads) {
  const int forks = env_int("MPCALLOC_FORK_ROUNDS", 100);
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&, t] {
      unsigned s = static_cast<unsigned>(t) + 1;
      std::vector<void*> keep(64, nullptr);
      while (!stop.load(std::memory_order_relaxed)) {
        size_t n = (rand_r(&s) % 100 < 90) ? rand_r(&s) % 2000 + 1 : rand_r(&s) % (3 << 20) + 1;
        size_t k = rand_r(&s) % keep.size();
        free(keep[k]);
        keep[k] = malloc(n);
        std::memset(keep[k], 1, n < 4096 ? n : 4096);
      }
      for (void* p : keep) free(p);
    });
  }
  mpcalloc_stats_t before;
  mpcalloc_stats_get(&before);
  int bad = 0;
  for (int i = 0; i < forks; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      alarm(20);  // a deadlock in the child ends it with SIGALRM
      std::vector<void*> v;
      for (int k = 0; k < 200; ++k) v.push_back(malloc(static_cast<size_t>(k) * 517 + 1));
      void* h = malloc(5 << 20);
      std::memset(h, 2, 5 << 20);
      for (void* p : v) free(p);
      free(h);
      std::thread([] { free(malloc(1000)); }).join();  // threads work in the child too
      _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++bad;
  }
  stop = true;
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad, 0);
  mpcalloc_malloc_trim(0);
  mpcalloc_stats_t after;
  mpcalloc_stats_get(&after);
  // The parent did not leak across the forks: mapped memory stays bounded.
  EXPECT_LT(after.mapped_bytes, before.mapped_bytes + (size_t{256} << 20));
}

TEST(Storms, TenThousandThreadsChurn) {
  const int total = env_int("MPCALLOC_THREAD_CHURN", 10000);
  std::mutex mu;
  std::vector<void*> handed;  // blocks freed later by other threads
  mpcalloc_stats_t before;
  mpcalloc_stats_get(&before);
  std::atomic<int> bad{0};
  for (int done = 0; done < total; done += 8) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) {
      ts.emplace_back([&, t] {
        void* mine[32];
        for (int i = 0; i < 32; ++i) {
          size_t n = static_cast<size_t>(i) * 211 + static_cast<size_t>(t) + 1;
          mine[i] = malloc(n);
          std::memset(mine[i], i, n);
        }
        std::vector<void*> take;
        {
          std::lock_guard<std::mutex> g(mu);
          take.swap(handed);
          handed.push_back(mine[0]);
          handed.push_back(mine[1]);
        }
        for (void* p : take) free(p);
        for (int i = 2; i < 32; ++i) {
          if (static_cast<unsigned char*>(mine[i])[0] != static_cast<unsigned char>(i)) ++bad;
          free(mine[i]);
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  for (void* p : handed) free(p);
  EXPECT_EQ(bad.load(), 0);
  mpcalloc_stats_t after;
  mpcalloc_stats_get(&after);
  // Heaps of exited threads are reused: far fewer heaps than threads.
  EXPECT_LE(after.heap_count - before.heap_count, 16u);
}

TEST(Storms, DlopenDlcloseOfAllocatingLibrary) {
  for (int i = 0; i < 100; ++i) {
    void* h = dlopen(ALLOC_IN_CTOR_LIB, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(h, nullptr) << dlerror();
    auto sum = reinterpret_cast<int (*)()>(dlsym(h, "alloc_in_ctor_sum"));
    ASSERT_NE(sum, nullptr);
    int expect = 0;
    for (int k = 0; k < 64; ++k) expect += k;
    EXPECT_EQ(sum(), expect);
    EXPECT_EQ(dlclose(h), 0);
  }
}
