/* HPC mini-app: 1-D domain decomposition over MPI ranks (periodic). Every step allocates fresh
 * send and receive halo buffers and a 2 MiB scratch array, exchanges deep halos with both
 * neighbours, checks what arrived, and applies a 3-point smoothing stencil over the interior.
 * Halos feed the stencil, so a lost or corrupted message changes the printed checksum. */
#include <mpi.h>
#include <string.h>

#include "workload.h"

enum { N = 1 << 18, HALO = 4096 };

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int steps = (int)(1000 * workload_scale(argc, argv));
  if (steps < 1) steps = 1;
  /* u[0, HALO) and u[HALO + N, N + 2 HALO) are ghost cells */
  double* u = xmalloc(sizeof(double) * (N + 2 * HALO));
  for (int i = 0; i < N + 2 * HALO; i++) u[i] = (double)((rank * 7 + i) % 101);
  int left = (rank + size - 1) % size, right = (rank + 1) % size;
  for (int s = 0; s < steps; s++) {
    double* send_l = xmalloc(sizeof(double) * (HALO + 1));
    double* send_r = xmalloc(sizeof(double) * (HALO + 1));
    double* recv_l = xmalloc(sizeof(double) * (HALO + 1));
    double* recv_r = xmalloc(sizeof(double) * (HALO + 1));
    memcpy(send_l, u + HALO, sizeof(double) * HALO);
    memcpy(send_r, u + N, sizeof(double) * HALO);
    send_l[HALO] = (double)(rank * 1000 + s); /* tag word: sender and step */
    send_r[HALO] = (double)(rank * 1000 + s);
    MPI_Sendrecv(send_l, HALO + 1, MPI_DOUBLE, left, 0, recv_r, HALO + 1, MPI_DOUBLE, right, 0, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    MPI_Sendrecv(send_r, HALO + 1, MPI_DOUBLE, right, 1, recv_l, HALO + 1, MPI_DOUBLE, left, 1, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
    if (recv_l[HALO] != (double)(left * 1000 + s) || recv_r[HALO] != (double)(right * 1000 + s)) {
      fail("halo from the wrong rank or step");
    }
    memcpy(u, recv_l, sizeof(double) * HALO);
    memcpy(u + N + HALO, recv_r, sizeof(double) * HALO);
    double* scratch = xmalloc(sizeof(double) * N); /* per-step temporary */
    for (int i = 0; i < N; i++) scratch[i] = (u[HALO + i - 1] + u[HALO + i] + u[HALO + i + 1]) * (1.0 / 3.0);
    memcpy(u + HALO, scratch, sizeof(double) * N);
    free(scratch);
    free(recv_r);
    free(recv_l);
    free(send_r);
    free(send_l);
  }
  double local = 0, total = 0;
  for (int i = HALO; i < N + HALO; i++) local += u[i] * (double)(i % 7 + 1);
  MPI_Reduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("mpi_halo %.12e\n", total);
  free(u);
  MPI_Finalize();
  return 0;
}
