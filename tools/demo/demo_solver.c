/* The demo's threaded job: THREADS threads, each an adaptive subdomain (solver.h) stepped STEPS
 * times; prints one checksum line, the same under every allocator.
 * Usage: demo_solver [THREADS [STEPS]]   (default 4 threads, 20 steps) */
#include <pthread.h>

#include "solver.h"

typedef struct {
  int id;
  int steps;
  double checksum;
} job_t;

static void* run(void* arg) {
  job_t* job = arg;
  subdomain_t d;
  solver_init(&d, (uint64_t)job->id + 1);
  for (int s = 0; s < job->steps; s++) solver_step(&d, 0.0, 1.0);
  job->checksum = d.checksum;
  free(d.u);
  return NULL;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 4;
  int steps = argc > 2 ? atoi(argv[2]) : 20;
  if (threads < 1 || threads > 64 || steps < 1) {
    fprintf(stderr, "usage: demo_solver [THREADS (1-64) [STEPS]]\n");
    return 2;
  }
  pthread_t tid[64];
  job_t jobs[64];
  for (int t = 0; t < threads; t++) {
    jobs[t] = (job_t){t, steps, 0};
    if (pthread_create(&tid[t], NULL, run, &jobs[t]) != 0) {
      fprintf(stderr, "demo_solver: pthread_create failed\n");
      return 1;
    }
  }
  double total = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
    total += jobs[t].checksum; /* in thread order: the same sum every run */
  }
  printf("checksum %.12e\n", total);
  return 0;
}
