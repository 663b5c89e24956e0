// The background purger (MPCALLOC_BACKGROUND): a thread that runs the process-wide decay
// every half decay time, so memory goes back to the OS while the program makes no allocation
// (a rank waiting in MPI). It touches only what is safe from another thread: the source's
// caches and the pooled heaps (both under their locks), never a live thread's heap. Layer heap.
#include <atomic>
#include <csignal>
#include <ctime>
#include <pthread.h>

#include "base/options.h"
#include "heap/heap_internal.h"
#include "os/os_env.h"
#include "source/block_source.h"

namespace mpcalloc::heap {
namespace {

std::atomic<bool> g_running{false};

void* purger(void*) {
  for (;;) {
    uint64_t decay = static_cast<uint64_t>(base::option(base::kOptDecayMs));
    uint64_t sleep_ms = decay / 2 < 10 ? 10 : decay / 2;
    timespec ts{static_cast<time_t>(sleep_ms / 1000), static_cast<long>(sleep_ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    VgQuiet quiet;  // collections read the links inside free blocks
    decay_process(os::now_ms());
  }
  return nullptr;
}

void start_purger() {
  bool expected = false;
  if (!g_running.compare_exchange_strong(expected, true)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  // Signals stay with the program's threads: the purger blocks them all.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  if (pthread_create(&t, &attr, purger, nullptr) != 0) g_running.store(false);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
}

}  // namespace

void ensure_background(bool needed) {
  if (g_running.load(std::memory_order_relaxed)) return;
  long long mode = base::option(base::kOptBackground);
  if (mode == 0 || (mode == base::kAutoValue && !needed && !source::cache_past_floor())) return;
  start_purger();
}

// The child of fork has no purger: the next maintenance step starts one.
void background_fork_child() { g_running.store(false, std::memory_order_relaxed); }

}  // namespace mpcalloc::heap
