// The registry of live segment bases: one bit per possible segment of the user address space,
// so checked mode tells a wild pointer from one of ours without touching unmapped memory.
// Layer source (internal: the rest of the program asks block_source.h's is_registered).
#pragma once
#include <cstdint>

namespace mpcalloc::source {

// Marks or clears `base` (segment aligned). Setting fails (false) only when the leaf covering
// it cannot be mapped, or the address is beyond the widest user address space (57 bits).
bool registry_set(uintptr_t base, bool on);
// Safe for any address.
bool registry_test(uintptr_t base);

}  // namespace mpcalloc::source
