// The NUMA face of the public API: node count, thread rebind, block migration.
#include "api/api_common.h"
#include "heap/heap.h"
#include "mpcalloc/mpcalloc.h"

using namespace mpcalloc;

MPCALLOC_EXPORT int mpcalloc_numa_nodes(void) {
  heap::global_init();
  return heap::numa_nodes();
}

MPCALLOC_EXPORT int mpcalloc_thread_rebind(void) { return heap::rebind_thread(); }

MPCALLOC_EXPORT int mpcalloc_migrate(void* ptr, int node) { return heap::migrate(ptr, node); }
