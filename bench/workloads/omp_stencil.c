/* HPC mini-app: an OpenMP 2-D Jacobi stencil whose parallel regions allocate per-thread
 * temporaries (row buffers, small work lists) every iteration, as many codes do. */
#include <omp.h>
#include <string.h>

#include "workload.h"

int main(int argc, char** argv) {
  int steps = (int)(60 * workload_scale(argc, argv));
  const int n = 1024;
  double* a = xmalloc(sizeof(double) * n * n);
  double* b = xmalloc(sizeof(double) * n * n);
  for (int i = 0; i < n * n; i++) a[i] = (double)(i % 17);
  for (int s = 0; s < steps; s++) {
#pragma omp parallel for schedule(static)
    for (int i = 1; i < n - 1; i++) {
      double* row = malloc(sizeof(double) * n); /* per-row temporary */
      int* work = malloc(sizeof(int) * 16);
      if (row == NULL || work == NULL) fail("alloc");
      for (int k = 0; k < 16; k++) work[k] = k;
      for (int j = 1; j < n - 1; j++) {
        row[j] = 0.25 * (a[(i - 1) * n + j] + a[(i + 1) * n + j] + a[i * n + j - 1] + a[i * n + j + 1]);
      }
      memcpy(&b[i * n + 1], &row[1], sizeof(double) * (n - 2));
      free(work);
      free(row);
    }
    double* t = a;
    a = b;
    b = t;
  }
  double sum = 0;
  for (int i = 0; i < n * n; i += 97) sum += a[i];
  printf("omp_stencil %.6f\n", sum);
  free(a);
  free(b);
  return 0;
}
