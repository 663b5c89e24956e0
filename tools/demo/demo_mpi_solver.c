/* The demo's MPI job: each rank an adaptive subdomain (solver.h) of a periodic 1-D domain with
 * halos exchanged every step; rank 0 prints the checksum, and the ranks' CPU time and peak RSS.
 * Usage: mpirun -np 2 demo_mpi_solver [STEPS]   (default 20) */
#include <mpi.h>
#include <sys/resource.h>

#include "solver.h"

/* Halo buffers are allocated afresh every step (256 KiB each way), tagged with sender and step
 * and checked; their edge values are the stencil's boundary, so a lost or corrupted message
 * changes the checksum. The ranks' CPU seconds and peak RSS go to stderr, summed over ranks:
 * a launcher's own timing would show only its own. */
enum { kHalo = 32768 }; /* cells per halo: 256 KiB */

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int steps = argc > 1 ? atoi(argv[1]) : 20;
  if (steps < 1) steps = 1;
  int left = (rank + size - 1) % size, right = (rank + 1) % size;
  subdomain_t d;
  solver_init(&d, 100 + (uint64_t)rank);
  double residual = 0;
  for (int s = 0; s < steps; s++) {
    double* send_l = solver_alloc((kHalo + 1) * sizeof(double));
    double* send_r = solver_alloc((kHalo + 1) * sizeof(double));
    double* recv_l = solver_alloc((kHalo + 1) * sizeof(double));
    double* recv_r = solver_alloc((kHalo + 1) * sizeof(double));
    memcpy(send_l, d.u, kHalo * sizeof(double));
    memcpy(send_r, d.u + d.n - kHalo, kHalo * sizeof(double));
    send_l[kHalo] = send_r[kHalo] = (double)(rank * 100000 + s); /* sender and step */
    MPI_Sendrecv(send_l, kHalo + 1, MPI_DOUBLE, left, 0, recv_r, kHalo + 1, MPI_DOUBLE, right, 0,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Sendrecv(send_r, kHalo + 1, MPI_DOUBLE, right, 1, recv_l, kHalo + 1, MPI_DOUBLE, left, 1,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (recv_l[kHalo] != (double)(left * 100000 + s) || recv_r[kHalo] != (double)(right * 100000 + s)) {
      fprintf(stderr, "demo_mpi_solver: rank %d step %d: halo from the wrong rank or step\n", rank, s);
      MPI_Abort(MPI_COMM_WORLD, 4);
    }
    double halo_sum = 0;
    for (int i = 0; i < kHalo; i += 64) halo_sum += recv_l[i] + recv_r[i];
    solver_step(&d, recv_l[kHalo - 1], recv_r[0]);
    double local = halo_sum * 1e-6 + d.u[d.n / 2], global = 0;
    MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    residual += global;
    free(recv_r);
    free(recv_l);
    free(send_r);
    free(send_l);
  }
  double total = 0;
  MPI_Reduce(&d.checksum, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  free(d.u);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double mine[2] = {(double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
                        ru.ru_stime.tv_usec * 1e-6,
                    (double)ru.ru_maxrss};
  double sums[2] = {0, 0};
  MPI_Reduce(mine, sums, 2, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    printf("checksum %.12e %.12e\n", total, residual);
    fprintf(stderr, "ranks: cpu_s %.3f rss_kib %.0f\n", sums[0], sums[1]);
  }
  MPI_Finalize();
  return 0;
}
