// Layer heap: threads whose first allocation races the allocator's initialisation still have
// their heaps pooled when they exit (issue 9: init reported done before the thread key existed,
// and a heap taken in that window was never seen to exit). Each trial runs in a fresh forked
// child in which nothing has allocated yet: this binary uses only the prefixed face, and
// nothing it links calls it before the test does.
#include <gtest/gtest.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "heap/heap.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

namespace {
constexpr int kThreads = 12;
pthread_barrier_t g_barrier;

void* first_allocation(void*) {
  pthread_barrier_wait(&g_barrier);
  void* p = mpcalloc_malloc(64);
  mpcalloc_free(p);
  return p;
}

// In the child: a wave of threads whose first allocations race the initialisation, then a
// second wave that must adopt the first wave's pooled heaps instead of making new ones.
int trial() {
  if (heap::stats().heap_count != 0) return 3;  // something allocated before the trial
  for (int wave = 0; wave < 2; ++wave) {
    pthread_t t[kThreads];
    pthread_barrier_init(&g_barrier, nullptr, kThreads);
    for (pthread_t& th : t) {
      if (pthread_create(&th, nullptr, first_allocation, nullptr) != 0) return 4;
    }
    for (pthread_t& th : t) pthread_join(th, nullptr);
    pthread_barrier_destroy(&g_barrier);
  }
  return heap::stats().heap_count <= static_cast<size_t>(kThreads) ? 0 : 1;
}
}  // namespace

TEST(InitRace, HeapsTakenDuringInitialisationReturnToThePool) {
  int lost = 0, bad = 0;
  for (int i = 0; i < 40; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(trial());
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 1) ++lost;
    else if (WEXITSTATUS(status) != 0) ++bad;
  }
  EXPECT_EQ(bad, 0) << "a trial could not run";
  EXPECT_EQ(lost, 0) << "trials where the second wave made new heaps: a first-wave heap "
                        "never reached the pool";
}
