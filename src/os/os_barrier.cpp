// membarrier(2) through syscall(): glibc has no wrapper. Layer os.
#include "os/os_barrier.h"

#include <atomic>
#include <cerrno>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mpcalloc::os {
namespace {

enum : int { kUnknown = 0, kExpedited, kGlobal, kNone };
std::atomic<int> g_mode{kUnknown};

long membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

int probe() {
  long cmds = membarrier(MEMBARRIER_CMD_QUERY);
  int mode = kNone;
  if (cmds > 0) {
    if ((cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0) {
      mode = kExpedited;
    } else if ((cmds & MEMBARRIER_CMD_GLOBAL) != 0) {
      mode = kGlobal;
    }
  }
  g_mode.store(mode, std::memory_order_relaxed);
  return mode;
}

}  // namespace

bool heavy_barrier() {
  int saved = errno;
  int mode = g_mode.load(std::memory_order_relaxed);
  if (mode == kUnknown) mode = probe();
  bool ok = false;
  if (mode == kExpedited) {
    // The registration belongs to the process: a child of fork keeps it, but register again
    // if the kernel says otherwise.
    ok = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 ||
         (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
          membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0);
  } else if (mode == kGlobal) {
    ok = membarrier(MEMBARRIER_CMD_GLOBAL) == 0;
  }
  errno = saved;
  return ok;
}

}  // namespace mpcalloc::os
