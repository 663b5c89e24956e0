// Process-wide memory barriers (membarrier(2)) for asymmetric handshakes: the frequent side
// of a Dekker-style exchange needs only a compiler barrier between its store and its load
// when the rare side runs a full barrier on every thread of the process. Layer os.
#pragma once

namespace mpcalloc::os {

// Runs a full memory barrier on every running thread of the process (and the caller), with
// the expedited private command when the kernel has it (registered on first use), else the
// global one. false when it could not run (no membarrier: kernel before 4.3, an emulator, a
// seccomp filter): the caller must then not rely on the handshake. errno is preserved.
bool heavy_barrier();

}  // namespace mpcalloc::os
