// NUMA topology and placement calls, without malloc: /sys files are read with open/read into
// stack buffers, the CPU-to-node map is a static table.
#include "os/os_numa.h"

#include "os/os_env.h"

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace mpcalloc::os {
namespace {

// The kernel's mempolicy constants (linux/mempolicy.h), here so no libnuma header is needed.
constexpr int kMpolPreferred = 1;
constexpr int kMpolBind = 2;
constexpr int kMpolInterleave = 3;
constexpr unsigned kMpolMfMove = 1u << 1;

constinit std::atomic<int> g_state{0};
constinit int g_node_count = 1;
constinit uint64_t g_online = 1;
constinit uint64_t g_memory = 1;
constinit int16_t g_cpu_node[kMaxCpus] = {};  // -1: unknown (filled at init)

bool read_file(const char* path, char* buf, size_t cap) { return read_small_file(path, buf, cap) > 0; }

void set_bit(uint64_t* bits, size_t i) { bits[i / 64] |= uint64_t{1} << (i % 64); }

}  // namespace

bool parse_id_list(const char* text, uint64_t* bits, size_t nbits) {
  const char* p = text;
  bool any = false;
  while (*p != '\0' && *p != '\n') {
    if (*p < '0' || *p > '9') return false;
    unsigned long a = 0;
    while (*p >= '0' && *p <= '9') a = a * 10 + static_cast<unsigned long>(*p++ - '0');
    unsigned long b = a;
    if (*p == '-') {
      ++p;
      if (*p < '0' || *p > '9') return false;
      b = 0;
      while (*p >= '0' && *p <= '9') b = b * 10 + static_cast<unsigned long>(*p++ - '0');
      if (b < a) return false;
    }
    for (unsigned long i = a; i <= b && i < nbits; ++i) set_bit(bits, i);
    any = true;
    if (*p == ',') ++p;
    else if (*p != '\0' && *p != '\n') return false;
  }
  return any;
}

void numa_init() {
  // 0: not read, 1: being read by one thread (the others wait), 2: ready.
  int state = g_state.load(std::memory_order_acquire);
  if (state == 2) return;
  if (state != 0 || !g_state.compare_exchange_strong(state, 1, std::memory_order_acquire)) {
    while (g_state.load(std::memory_order_acquire) != 2) sched_yield();
    return;
  }
  for (int16_t& n : g_cpu_node) n = -1;
  char buf[4096];
  uint64_t online = 0;
  // One node (or no /sys): nothing more to read.
  if (read_file("/sys/devices/system/node/online", buf, sizeof(buf)) &&
      parse_id_list(buf, &online, kMaxNumaNodes) && (online & (online - 1)) != 0) {
    int count = 0;
    for (int node = 0; node < kMaxNumaNodes; ++node) {
      if (((online >> node) & 1) == 0) continue;
      ++count;
      char path[64] = "/sys/devices/system/node/node";
      size_t len = 29;
      if (node >= 10) path[len++] = static_cast<char>('0' + node / 10);
      path[len++] = static_cast<char>('0' + node % 10);
      const char* tail = "/cpulist";
      while (*tail != '\0') path[len++] = *tail++;
      path[len] = '\0';
      uint64_t cpus[kMaxCpus / 64] = {};
      if (!read_file(path, buf, sizeof(buf)) || !parse_id_list(buf, cpus, kMaxCpus)) continue;
      for (int cpu = 0; cpu < kMaxCpus; ++cpu) {
        if ((cpus[cpu / 64] >> (cpu % 64)) & 1) g_cpu_node[cpu] = static_cast<int16_t>(node);
      }
    }
    if (count > 0) {
      g_online = online;
      g_node_count = count;
      uint64_t memory = 0;
      g_memory = read_file("/sys/devices/system/node/has_memory", buf, sizeof(buf)) &&
                         parse_id_list(buf, &memory, kMaxNumaNodes)
                     ? memory
                     : online;
    }
  }
  g_state.store(2, std::memory_order_release);
}

int numa_node_count() {
  numa_init();
  return g_node_count;
}

uint64_t numa_online_mask() {
  numa_init();
  return g_online;
}

uint64_t numa_memory_mask() {
  numa_init();
  return g_memory;
}

int numa_node_of_cpu(int cpu) {
  numa_init();
  return cpu >= 0 && cpu < kMaxCpus ? g_cpu_node[cpu] : -1;
}

int numa_thread_node() {
  if (numa_node_count() < 2) return -1;
  uint64_t mask[kMaxCpus / 64] = {};
  long bytes = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
  if (bytes <= 0) return -1;
  int node = -1;
  for (size_t w = 0; w < static_cast<size_t>(bytes) / 8; ++w) {
    for (uint64_t m = mask[w]; m != 0; m &= m - 1) {
      int n = numa_node_of_cpu(static_cast<int>(w * 64) + __builtin_ctzll(m));
      if (n < 0 || (node >= 0 && n != node)) return -1;
      node = n;
    }
  }
  return node;
}

int numa_current_node() {
  unsigned cpu = 0, node = 0;
  if (syscall(SYS_getcpu, &cpu, &node, nullptr) != 0) return -1;
  return static_cast<int>(node);
}

bool numa_bind(void* addr, size_t len, MemPolicy policy, uint64_t mask, bool move) {
  int saved = errno;
  int mode = policy == MemPolicy::kBind ? kMpolBind
             : policy == MemPolicy::kInterleave ? kMpolInterleave : kMpolPreferred;
  unsigned long nodes = mask;
  // maxnode counts bits plus one: the kernel reads maxnode - 1 bits.
  long r = syscall(SYS_mbind, addr, len, mode, &nodes, kMaxNumaNodes + 1, move ? kMpolMfMove : 0);
  errno = saved;
  return r == 0;
}

bool numa_move_pages(void* const* pages, size_t count, int node, int* status) {
  int saved = errno;
  constexpr size_t kBatch = 64;
  int targets[kBatch];
  for (int& t : targets) t = node;
  bool ok = true;
  for (size_t done = 0; done < count; done += kBatch) {
    size_t n = count - done < kBatch ? count - done : kBatch;
    if (syscall(SYS_move_pages, 0, n, pages + done, targets, status + done, kMpolMfMove) != 0) ok = false;
  }
  errno = saved;
  return ok;
}

bool numa_page_nodes(void* const* pages, size_t count, int* nodes) {
  int saved = errno;
  long r = syscall(SYS_move_pages, 0, count, pages, nullptr, nodes, 0);
  errno = saved;
  return r == 0;
}

}  // namespace mpcalloc::os
