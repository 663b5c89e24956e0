/* One leak, one use after free, one write past a block and one double free, then whether mpcalloc served the allocations (its mapped
 * bytes). Linked with libmpcalloc.a or libmpcalloc.so, or plain (PROBE_DLSYM: preloaded, found
 * with dlsym). run_memcheck.sh runs it under memcheck. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpcalloc/mpcalloc.h"

int main(void) {
  char* leak = malloc(1000); /* never freed */
  memset(leak, 1, 1000);
  leak = NULL;
  char* p = malloc(64);
  strcpy(p, "freed");
  free(p);
  volatile char c = p[0]; /* read after free */
  (void)c;
  char* q = malloc(24);
  q[24] = 1; /* one byte past the block */
  free(q);
  free(q); /* twice */
#if PROBE_DLSYM
  void (*get)(mpcalloc_stats_t*) = (void (*)(mpcalloc_stats_t*))dlsym(RTLD_DEFAULT, "mpcalloc_stats_get");
#else
  void (*get)(mpcalloc_stats_t*) = mpcalloc_stats_get;
#endif
  mpcalloc_stats_t s = {0};
  if (get == NULL) {
    printf("mpcalloc not loaded\n");
    return 1;
  }
  get(&s);
  printf("mpcalloc mapped_bytes %zu\n", s.mapped_bytes);
  printf("probe done\n");
  return 0;
}
