/* Big-block loop: allocate a 4-64 MiB buffer, touch every page, free it; repeat. Models
 * HPC codes that create large temporaries each step. */
#include "workload.h"

int main(int argc, char** argv) {
  int n = (int)(150 * workload_scale(argc, argv));
  if (n < 1) n = 1;
  rng_t r = {77};
  long sum = 0;
  for (int i = 0; i < n; i++) {
    size_t size = ((size_t)4 << 20) + rng_below(&r, (size_t)60 << 20);
    char* p = xmalloc(size);
    for (size_t k = 0; k < size; k += 4096) p[k] = (char)k;
    sum += p[size / 2 & ~(size_t)4095];
    free(p);
  }
  printf("big_blocks %ld\n", sum);
  return 0;
}
