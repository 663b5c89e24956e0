// Process-wide set-up and fork: options read once, the free entry chosen, the thread key and
// fork handlers registered; the handlers take every global lock around fork. Layer heap.
#include <pthread.h>

#include "base/options.h"
#include "chunks/huge.h"
#include "heap/heap_internal.h"
#include "os/os_env.h"
#include "os/os_memory.h"
#include "os/os_message.h"
#include "source/block_source.h"

namespace mpcalloc::heap {

// Written once at init; read everywhere (also by threads that only free, before any init
// of theirs), so a relaxed atomic.
std::atomic<bool> g_check{false};
std::atomic<bool> g_valgrind{false};
std::atomic<bool> g_valgrind_reports{false};
constinit FreeFn g_free = free_unchecked;

namespace {

std::atomic<bool> g_initialized{false};
std::atomic<bool> g_registered{false};
constinit base::SpinLock g_init_lock;

// Checked mode: another thread may be validating a free under some heap's check lock (the
// forking thread's own heap included); the child must not inherit it held. Order: pool lock,
// then check locks (collect under the pool lock takes them), then the source's.
void for_check_locks(void (base::SpinLock::*op)()) {
  if (!checking()) return;
  for (Heap* h = all_heaps(); h != nullptr; h = h->all_next) (h->check_lock.*op)();
}

void fork_prepare() {
  idle_fork_prepare();
  pool_fork_prepare();
  for_check_locks(&base::SpinLock::lock);
  chunks::huge_fork_prepare();
  source::fork_prepare();
}
void fork_parent() {
  source::fork_parent();
  chunks::huge_fork_parent();
  for_check_locks(&base::SpinLock::unlock);
  pool_fork_parent();
  idle_fork_parent();
}
void fork_child() {
  background_fork_child();
  source::fork_child();
  chunks::huge_fork_child();
  for_check_locks(&base::SpinLock::reset);
  pool_fork_child();
  idle_fork_child();
}

void print_options() {
  for (unsigned i = 0; i < base::kOptCount; ++i) {
    char value[base::kOptionPathMax + 16];
    base::format_option(i, value, sizeof(value));
    os::Message m;
    m.text("mpcalloc: option ").text(base::option_desc(i).env).text("=").text(value);
    m.text("\n").write_to(2);
  }
}

}  // namespace

void apply_options() {
  long long limit = base::option(base::kOptMemLimit);
  source::configure({static_cast<size_t>(base::option(base::kOptCacheMax)),
                     static_cast<uint64_t>(base::option(base::kOptDecayMs)),
                     limit == base::kLimitAuto ? static_cast<size_t>(os::cgroup_memory_limit())
                                               : static_cast<size_t>(limit),
                     static_cast<int>(base::option(base::kOptThp))});
}

void global_init() {
  if (g_initialized.load(std::memory_order_acquire)) return;
  {
    base::LockGuard guard(g_init_lock);
    if (!g_initialized.load(std::memory_order_relaxed)) {
      // The layout (64 KiB runs, 4 MiB segments) holds for pages up to 64 KiB.
      if (os::page_size() > os::kMaxPageSize) {
        os::Message m;
        m.text("mpcalloc: unsupported page size ").dec(os::page_size()).text(" (at most 64 KiB)");
        os::fatal(m);
      }
      base::options_load();
      g_check.store(base::option(base::kOptCheck) != 0, std::memory_order_relaxed);
      if (os::on_memcheck()) {
        // Every call then takes checked mode's slow paths, where blocks are described to
        // memcheck (and the checks run too).
        g_valgrind.store(true, std::memory_order_relaxed);
        g_valgrind_reports.store(!checking(), std::memory_order_relaxed);
        g_check.store(true, std::memory_order_relaxed);
      }
      if (checking()) __atomic_store_n(&g_free, &free_checked, __ATOMIC_RELAXED);
      apply_options();
      setup_placement();
      // The thread key exists before any thread can take a heap (glibc's pthread_key_create
      // does not allocate), so every heap's thread exit is seen.
      pool_init();
      remote_init();
      g_initialized.store(true, std::memory_order_release);
    }
  }
  // Registrations that may allocate run after the flag is set, so a nested malloc proceeds.
  bool expected = false;
  if (g_registered.compare_exchange_strong(expected, true)) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (base::option(base::kOptVerbose) != 0) print_options();
    ensure_background();
  }
}

}  // namespace mpcalloc::heap
