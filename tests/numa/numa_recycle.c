/* numa_recycle: memory freed by a thread of one node, then allocated by a thread of the next node
 * (through the allocator's shared caches, or a dead thread's pooled heap): is it local to the
 * new thread? Run in numa-vm; works under any malloc (LD_PRELOAD). */
#include "numa_probe.h"

static const char usage[] =
    "usage: numa_recycle [-a] [-m PERCENT] [-s MIB]\n"
    "  One thread per node, in node order, each bound to its node: it mallocs MIB (default\n"
    "  64) of 64 KiB-4 MiB blocks, writes them, checks where the pages are, frees them all,\n"
    "  then ends (or with -a stays alive, parked, as in a thread pool) before the next node's\n"
    "  thread starts. PASS when every thread is at least PERCENT (default 99) local. Exit 0\n"
    "  PASS, 1 FAIL, 2 ERROR.\n";

static double need = 99;
static size_t total = 64 * NP_MIB;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int finished; /* threads that have freed their blocks */
static int release;  /* parked threads may end */

struct worker {
  int node, index, park;
};

/* 64 KiB to 4 MiB: a power of two times 1, 1.25, 1.5 or 1.75. */
static size_t next_size(uint64_t* rng) {
  uint64_t r = np_random(rng);
  size_t size = ((64 * NP_KIB) << (r % 7)) / 4 * (4 + (r >> 8) % 4);
  return size > 4 * NP_MIB ? 4 * NP_MIB : size;
}

static void* work(void* arg) {
  struct worker* w = arg;
  struct np_blocks blocks = {0};
  if (np_bind(w->node) == 0) {
    uint64_t rng = 0x5eed; /* the same sizes in the same order for every thread */
    size_t done = 0;
    while (done < total) {
      size_t size = next_size(&rng);
      char* p = malloc(size);
      if (!p) {
        np_error("malloc(%zu) returned NULL", size);
        break;
      }
      memset(p, 0x30 + w->index, size);
      np_blocks_push(&blocks, p, size, size > NP_MIB ? NP_HUGE : NP_MEDIUM);
      done += size;
    }
    char label[96];
    if (w->index == 0)
      snprintf(label, sizeof label, "node%d, first (fresh memory)", w->node);
    else
      snprintf(label, sizeof label, "node%d, after node%d's thread freed and %s", w->node,
               np_topo.node[w->index - 1].id, w->park ? "parked" : "ended");
    np_blocks_check(&blocks, label, w->node, need);
    np_blocks_free(&blocks);
    np_blocks_clear(&blocks);
  }
  pthread_mutex_lock(&lock);
  finished++;
  pthread_cond_broadcast(&wake);
  while (w->park && !release) pthread_cond_wait(&wake, &lock);
  pthread_mutex_unlock(&lock);
  return NULL;
}

int main(int argc, char** argv) {
  int park = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-a"))
      park = 1;
    else if (!strcmp(argv[i], "-m") && i + 1 < argc)
      need = np_number(argv[++i], "percent");
    else if (!strcmp(argv[i], "-s") && i + 1 < argc)
      total = (size_t)(np_number(argv[++i], "MiB") * (double)NP_MIB);
    else {
      fputs(usage, stderr);
      return NP_ERROR;
    }
  }
  if (np_start("numa_recycle", 2) != 0) return np_finish(need);
  printf("numa_recycle: %zu MiB of 64 KiB-4 MiB blocks per thread; it frees them, then %s\n",
         total / NP_MIB, park ? "stays alive (parked)" : "ends");

  struct worker w[NP_MAX_NODES];
  pthread_t t[NP_MAX_NODES];
  for (int i = 0; i < np_topo.n; i++) {
    w[i] = (struct worker){np_topo.node[i].id, i, park};
    np_thread(&t[i], work, &w[i]);
    if (!park) {
      pthread_join(t[i], NULL);
      continue;
    }
    pthread_mutex_lock(&lock);
    while (finished <= i) pthread_cond_wait(&wake, &lock);
    pthread_mutex_unlock(&lock);
  }
  if (park) {
    pthread_mutex_lock(&lock);
    release = 1;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < np_topo.n; i++) pthread_join(t[i], NULL);
  }
  return np_finish(need);
}
