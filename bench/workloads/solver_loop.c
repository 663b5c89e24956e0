/* Solver loop: each iteration allocates six work arrays of 4-64 MiB (a live set of about
 * 100-380 MiB), touches every page, combines them and frees them all. Models codes whose
 * working set passes a fixed cache budget: an allocator that returns the arrays to the OS at
 * each free faults every page in again at the next iteration. */
#include "workload.h"

#define ARRAYS 6

int main(int argc, char** argv) {
  int iters = (int)(60 * workload_scale(argc, argv));
  if (iters < 1) iters = 1;
  rng_t r = {2026};
  long sum = 0;
  for (int it = 0; it < iters; it++) {
    char* a[ARRAYS];
    size_t n[ARRAYS];
    for (int k = 0; k < ARRAYS; k++) {
      n[k] = ((size_t)4 << 20) + rng_below(&r, (size_t)60 << 20);
      a[k] = xmalloc(n[k]);
      for (size_t i = 0; i < n[k]; i += 4096) a[k][i] = (char)(i >> 12) + (char)k;
    }
    for (int k = 0; k < ARRAYS; k++) sum += a[k][(n[k] / 2) & ~(size_t)4095] + a[k][n[k] - 4096];
    for (int k = 0; k < ARRAYS; k++) free(a[k]);
  }
  printf("solver_loop %ld\n", sum);
  return 0;
}
