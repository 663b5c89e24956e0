// Environment, cgroup limit and clock access without malloc. Layer os.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::os {

// The value of environment variable `name`, or nullptr. Reads environ directly.
const char* env_get(const char* name);
// The process environment ("NAME=value" strings, null-terminated), or nullptr.
const char* const* environment();
// Reads a small file (/proc, /sys) into buf, NUL-terminated, without malloc. Returns the number
// of bytes read, 0 when it cannot be read.
size_t read_small_file(const char* path, char* buf, size_t cap);
// The memory limit of the process's cgroup: v2 memory.max, or v1 memory.limit_in_bytes, of the
// group named in /proc/self/cgroup. 0 when there is none ("max", unreadable, no cgroup).
uint64_t cgroup_memory_limit();
// Monotonic milliseconds from a coarse clock (vDSO, no syscall on x86-64).
uint64_t now_ms();

}  // namespace mpcalloc::os
