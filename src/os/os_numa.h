// NUMA topology read from /sys without malloc, the calling thread's binding, and the kernel's
// placement calls (mbind, move_pages, getcpu) by syscall: libc has no wrappers for them, and
// none of them maps or unmaps memory (MPI hooks need not see them). Layer os.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::os {

inline constexpr int kMaxNumaNodes = 64;  // node ids 0..63 (a bitmask of one word)
inline constexpr int kMaxCpus = 4096;

// Reads the topology once (cheap on a one-node machine: one file). Later calls are no-ops.
void numa_init();
// Online nodes with CPUs or memory; 1 on a machine without NUMA (or without /sys).
int numa_node_count();
// Bit n set: node n is online.
uint64_t numa_online_mask();
// Bit n set: node n has memory (the nodes to interleave over).
uint64_t numa_memory_mask();
// The node of `cpu`, or -1.
int numa_node_of_cpu(int cpu);
// The node every CPU of the calling thread's affinity mask belongs to; -1 when they span
// several nodes (or the topology has one node).
int numa_thread_node();
// The node of the CPU the calling thread runs on now; -1 if unknown.
int numa_current_node();

enum class MemPolicy { kPreferred, kBind, kInterleave };
// Sets the placement policy of [addr, addr+len) (page aligned) to the nodes of `mask`;
// `move`: also migrate the pages already there. false on failure (errno kept).
bool numa_bind(void* addr, size_t len, MemPolicy policy, uint64_t mask, bool move);
// Moves the pages to `node` (move_pages); status[i] as numa_page_nodes. false on failure.
bool numa_move_pages(void* const* pages, size_t count, int node, int* status);
// The node of each page (move_pages in query mode): nodes[i] >= 0, or a negative errno
// (-ENOENT: not resident). false when the call itself failed.
bool numa_page_nodes(void* const* pages, size_t count, int* nodes);

// Parses a /sys list such as "0-3,8-11\n" into bits (ids >= nbits are ignored). false when
// the text is not such a list.
bool parse_id_list(const char* text, uint64_t* bits, size_t nbits);

}  // namespace mpcalloc::os
