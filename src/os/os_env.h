// Environment and clock access without malloc. Layer os.
#pragma once
#include <cstdint>

namespace mpcalloc::os {

// The value of environment variable `name`, or nullptr. Reads environ directly.
const char* env_get(const char* name);
// The process environment ("NAME=value" strings, null-terminated), or nullptr.
const char* const* environment();
// Monotonic milliseconds from a coarse clock (vDSO, no syscall on x86-64).
uint64_t now_ms();

}  // namespace mpcalloc::os
