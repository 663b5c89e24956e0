/* HPC mini-app: an OpenMP 2-D Jacobi stencil whose parallel regions allocate temporaries
 * every iteration, as many codes do: a 128 KiB tile buffer per tile (the size where glibc
 * switches to mmap), an index list, and a small coefficient array per row. */
#include <omp.h>
#include <string.h>

#include "workload.h"

enum { N = 1024, TILE = 16 };

int main(int argc, char** argv) {
  int steps = (int)(200 * workload_scale(argc, argv));
  if (steps < 1) steps = 1;
  double* a = xmalloc(sizeof(double) * N * N);
  double* b = xmalloc(sizeof(double) * N * N);
  for (int i = 0; i < N * N; i++) a[i] = (double)(i % 17);
  memcpy(b, a, sizeof(double) * N * N);
  for (int s = 0; s < steps; s++) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N / TILE; t++) {
      double* tile = malloc(sizeof(double) * TILE * N); /* per-tile temporary */
      int* rows = malloc(sizeof(int) * TILE);
      if (tile == NULL || rows == NULL) fail("alloc");
      int count = 0;
      for (int i = t * TILE; i < (t + 1) * TILE; i++) {
        if (i > 0 && i < N - 1) rows[count++] = i;
      }
      for (int r = 0; r < count; r++) {
        int i = rows[r];
        int nc = 4 + (i % 29);
        double* coef = malloc(sizeof(double) * (size_t)nc); /* per-row temporary */
        if (coef == NULL) fail("alloc");
        for (int k = 0; k < nc; k++) coef[k] = 0.25;
        double* out = tile + (size_t)r * N;
        for (int j = 1; j < N - 1; j++) {
          out[j] = coef[j % nc] * (a[(i - 1) * N + j] + a[(i + 1) * N + j] + a[i * N + j - 1] + a[i * N + j + 1]);
        }
        free(coef);
      }
      for (int r = 0; r < count; r++) memcpy(&b[rows[r] * N + 1], tile + (size_t)r * N + 1, sizeof(double) * (N - 2));
      free(rows);
      free(tile);
    }
    double* tmp = a;
    a = b;
    b = tmp;
  }
  double sum = 0;
  for (int i = 0; i < N * N; i += 97) sum += a[i];
  printf("omp_stencil %.6f\n", sum);
  free(a);
  free(b);
  return 0;
}
