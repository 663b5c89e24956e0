// The segment registry: two levels, so it covers every user address width Linux has (47 and
// 48 bits, 52 on aarch64 and 57 with x86-64 5-level paging, where hints ask for them) without
// reserving address space for all of it: a root of leaf pointers, each leaf a bitmap mapped on
// first use (untouched pages cost no memory).
#include "source/registry.h"

#include <atomic>
#include <cstddef>

#include "os/os_memory.h"
#include "source/segment.h"

namespace mpcalloc::source {
namespace {

constexpr unsigned kMaxAddressBits = 57;
constexpr unsigned kLeafBits = 23;  // segments per leaf: 2^23 bits = 1 MiB, 32 TiB of addresses
constexpr size_t kLeafWords = (size_t{1} << kLeafBits) / 64;
constexpr size_t kRootSlots = size_t{1} << (kMaxAddressBits - kSegmentShift - kLeafBits);

using Leaf = std::atomic<uint64_t>;
constinit std::atomic<Leaf*> g_root[kRootSlots] = {};

Leaf* leaf_for(size_t index, bool create) {
  std::atomic<Leaf*>& slot = g_root[index >> kLeafBits];
  Leaf* leaf = slot.load(std::memory_order_acquire);
  if (leaf != nullptr || !create) return leaf;
  void* m = os::map(kLeafWords * sizeof(uint64_t));
  if (m == nullptr) return nullptr;
  Leaf* expected = nullptr;
  if (!slot.compare_exchange_strong(expected, static_cast<Leaf*>(m), std::memory_order_acq_rel)) {
    os::unmap(m, kLeafWords * sizeof(uint64_t));  // another thread mapped it first
    return expected;
  }
  return static_cast<Leaf*>(m);
}

}  // namespace

bool registry_set(uintptr_t base, bool on) {
  size_t index = base >> kSegmentShift;
  if ((index >> kLeafBits) >= kRootSlots) return false;
  Leaf* leaf = leaf_for(index, on);
  if (leaf == nullptr) return !on;  // clearing in a leaf never mapped: nothing was set
  size_t bit = index & ((size_t{1} << kLeafBits) - 1);
  uint64_t mask = uint64_t{1} << (bit % 64);
  if (on) leaf[bit / 64].fetch_or(mask, std::memory_order_release);
  else leaf[bit / 64].fetch_and(~mask, std::memory_order_release);
  return true;
}

bool registry_test(uintptr_t base) {
  size_t index = base >> kSegmentShift;
  if ((index >> kLeafBits) >= kRootSlots) return false;
  Leaf* leaf = leaf_for(index, false);
  if (leaf == nullptr) return false;
  size_t bit = index & ((size_t{1} << kLeafBits) - 1);
  return (leaf[bit / 64].load(std::memory_order_acquire) >> (bit % 64)) & 1;
}

}  // namespace mpcalloc::source
