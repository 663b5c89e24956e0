/* Run as `mpirun -np 2 mpcalloc-run -- mpi_probe` by tests/tools: every rank checks that its
 * malloc is mpcalloc's, exchanges malloc'd buffers, and rank 0 prints one summary line. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  void* (*volatile alloc)(size_t) = malloc;
  Dl_info info;
  int ours = dladdr((void*)alloc, &info) != 0 && info.dli_fname != NULL &&
             strstr(info.dli_fname, "libmpcalloc") != NULL;
  /* Buffers from 1 KiB to 4 MiB (small, medium and huge blocks) around the ring. */
  int good = 1;
  for (size_t n = 1024; n <= ((size_t)4 << 20); n *= 2) {
    unsigned char* out = malloc(n);
    unsigned char* in = malloc(n);
    memset(out, (int)((rank * 31 + n) & 0xff), n);
    int from = (rank + size - 1) % size;
    MPI_Sendrecv(out, (int)n, MPI_BYTE, (rank + 1) % size, 0, in, (int)n, MPI_BYTE, from, 0,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    unsigned char want = (unsigned char)((from * 31 + n) & 0xff);
    if (in[0] != want || in[n / 2] != want || in[n - 1] != want) good = 0;
    free(out);
    free(in);
  }
  int all_ours = 0, all_good = 0;
  MPI_Reduce(&ours, &all_ours, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  MPI_Reduce(&good, &all_good, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("ranks=%d mpcalloc_ranks=%d data_ok_ranks=%d\n", size, all_ours, all_good);
  MPI_Finalize();
  return 0;
}
