// A small test-and-test-and-set spinlock for slow paths (never on the fast path). Layer base.
// Constant-initialised, so usable before any constructor runs; reset() is for the fork child.
#pragma once
#include <atomic>
#include <sched.h>

#include "arch/arch.h"

namespace mpcalloc::base {

class SpinLock {
 public:
  constexpr SpinLock() = default;
  void lock() {
    for (unsigned spins = 0;; ++spins) {
      if (!flag_.exchange(true, std::memory_order_acquire)) return;
      while (flag_.load(std::memory_order_relaxed)) {
        if (spins++ > 64) sched_yield();
        else arch::spin_pause();
      }
    }
  }
  bool try_lock() { return !flag_.exchange(true, std::memory_order_acquire); }
  void unlock() { flag_.store(false, std::memory_order_release); }
  void reset() { flag_.store(false, std::memory_order_relaxed); }

 private:
  std::atomic<bool> flag_{false};
};

class LockGuard {
 public:
  explicit LockGuard(SpinLock& l) : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  SpinLock& l_;
};

}  // namespace mpcalloc::base
