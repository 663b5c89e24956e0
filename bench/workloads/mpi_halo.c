/* HPC mini-app: 1-D domain decomposition over MPI ranks; every step allocates fresh send
 * and receive halo buffers (and a scratch array), exchanges halos with both neighbours and
 * updates the interior. */
#include <mpi.h>
#include <string.h>

#include "workload.h"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int steps = (int)(400 * workload_scale(argc, argv));
  const int n = 1 << 18, halo = 4096;
  double* u = xmalloc(sizeof(double) * (n + 2 * halo));
  for (int i = 0; i < n + 2 * halo; i++) u[i] = rank + i * 1e-6;
  int left = (rank + size - 1) % size, right = (rank + 1) % size;
  for (int s = 0; s < steps; s++) {
    double* send_l = xmalloc(sizeof(double) * halo);
    double* send_r = xmalloc(sizeof(double) * halo);
    double* recv_l = xmalloc(sizeof(double) * halo);
    double* recv_r = xmalloc(sizeof(double) * halo);
    double* scratch = xmalloc(sizeof(double) * (n / 8));
    memcpy(send_l, u + halo, sizeof(double) * halo);
    memcpy(send_r, u + n, sizeof(double) * halo);
    MPI_Sendrecv(send_l, halo, MPI_DOUBLE, left, 0, recv_r, halo, MPI_DOUBLE, right, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Sendrecv(send_r, halo, MPI_DOUBLE, right, 1, recv_l, halo, MPI_DOUBLE, left, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    memcpy(u, recv_l, sizeof(double) * halo);
    memcpy(u + n + halo, recv_r, sizeof(double) * halo);
    for (int i = 0; i < n / 8; i++) scratch[i] = 0.5 * (u[halo + 8 * i] + u[halo + 8 * i + 1]);
    for (int i = 0; i < n / 8; i++) u[halo + 8 * i] = scratch[i];
    free(scratch);
    free(recv_r);
    free(recv_l);
    free(send_r);
    free(send_l);
  }
  double local = 0, total = 0;
  for (int i = halo; i < n + halo; i += 101) local += u[i];
  MPI_Reduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("mpi_halo %.6f\n", total);
  free(u);
  MPI_Finalize();
  return 0;
}
