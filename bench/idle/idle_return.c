/* Idle return: allocate about 1 GiB of mixed small, medium and huge blocks, free them all in a
 * random order, then make no allocator call at all and print the resident set size every
 * 100 ms for 5 s ("ms,MiB" lines). Models an MPI rank that frees its working set and then
 * waits in a barrier: does the memory go back to the system while nobody calls malloc?
 * With the argument "remote", a worker thread frees the blocks and ends, and the main thread
 * that allocated them waits: a master whose workers released its data. With "poll", the same,
 * but the waiting thread makes one small allocation (3000 bytes, a size it did not use
 * before) right after the worker ends and then at every step, as an MPI progress engine may
 * while a rank waits. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double rss_mib(void) {
  long pages = 0, resident = 0;
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == NULL || fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  if (f != NULL) fclose(f);
  return (double)resident * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

enum { kMax = 1 << 20 };
static void* p[kMax];
static int n;

static void* free_all(void* arg) {
  (void)arg;
  for (int i = 0; i < n; i++) free(p[i]);
  return NULL;
}

static void small_call(void) {
  char* q = malloc(3000);
  if (q == NULL) exit(5);
  memset(q, 2, 3000);
  free(q);
}

int main(int argc, char** argv) {
  int poll = argc > 1 && strcmp(argv[1], "poll") == 0;
  int remote = poll || (argc > 1 && strcmp(argv[1], "remote") == 0);
  size_t total = 0;
  printf("# start %.1f MiB\n", rss_mib());
  while (total < ((size_t)1 << 30) && n < kMax) {
    uint64_t k = next() % 100;
    size_t s = k < 70 ? 16 + next() % 1000 : k < 97 ? 8192 + next() % (256 * 1024) : (2u << 20) + next() % (8u << 20);
    p[n] = malloc(s);
    if (p[n] == NULL) return 3;
    memset(p[n], 1, s);
    total += s;
    n++;
  }
  printf("# allocated %zu MiB in %d blocks, rss %.1f MiB\n", total >> 20, n, rss_mib());
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(next() % (uint64_t)(i + 1));
    void* t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  if (remote) {
    pthread_t t;
    if (pthread_create(&t, NULL, free_all, NULL) != 0) return 4;
    pthread_join(t, NULL);
  } else {
    free_all(NULL);
  }
  if (poll) small_call();
  double t0 = now_ms();
  printf("0,%.1f\n", rss_mib());
  for (int step = 1; step <= 50; step++) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (poll) small_call();
    printf("%.0f,%.1f\n", now_ms() - t0, rss_mib());
  }
  return 0;
}
