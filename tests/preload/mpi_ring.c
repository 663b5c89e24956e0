/* Two ranks pass growing malloc'd buffers around a ring; prints a checksum on rank 0. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  long sum = 0;
  for (int step = 0; step < 200; step++) {
    size_t n = 1024 + (size_t)step * 4096;
    char* out = malloc(n);
    char* in = malloc(n);
    memset(out, (rank + step) & 0xff, n);
    MPI_Sendrecv(out, (int)n, MPI_CHAR, (rank + 1) % size, 0, in, (int)n, MPI_CHAR,
                 (rank + size - 1) % size, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    sum += (unsigned char)in[n - 1];
    free(out);
    free(in);
  }
  long total = 0;
  MPI_Reduce(&sum, &total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("ring checksum %ld\n", total);
  MPI_Finalize();
  return 0;
}
