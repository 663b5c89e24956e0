/* numa_placement: does a thread bound to one node get small, medium and huge blocks on that node,
 * fresh and again after freeing them (recycled through its own caches), also when threads of
 * other nodes ran and ended before it? Run in numa-vm; works under any malloc (LD_PRELOAD). */
#include "numa_probe.h"

static const char usage[] =
    "usage: numa_placement [-c] [-m PERCENT] [-r ROUNDS] [-s SMALL,MEDIUM,HUGE]\n"
    "  One thread per node, one after another (each ends before the next starts; -c: all at\n"
    "  once), each bound to its node: ROUNDS times (default 2) it mallocs and writes SMALL\n"
    "  MiB of 16 B-1 KiB blocks, MEDIUM MiB of 8 KiB-1 MiB, HUGE MiB of 2-16 MiB (default\n"
    "  4,8,16) and checks where the pages are; it frees them before the next round but keeps\n"
    "  the last round's until every thread is done (an ended thread leaves its allocator\n"
    "  state, not free memory, to the next). PASS when every check is at least PERCENT\n"
    "  (default 99) local. Exit 0 PASS, 1 FAIL, 2 ERROR.\n";

static size_t budget[NP_KINDS] = {4 * NP_MIB, 8 * NP_MIB, 16 * NP_MIB};
static double need = 99;
static int rounds = 2;
static pthread_barrier_t barrier;

struct worker {
  int node;
  int index; /* position among the nodes */
  int ended; /* threads of other nodes that ran and ended before this one */
  int together;
  struct np_blocks blocks; /* the last round's, freed by main at the end */
};

static void* work(void* arg) {
  struct worker* w = arg;
  struct np_blocks blocks = {0};
  char label[96];
  int bound = np_bind(w->node) == 0; /* unbound: error recorded; still meet the barriers */
  for (int r = 1; r <= rounds; r++) {
    uint64_t seed = (uint64_t)(w->index + 1) * 1000003u + (uint64_t)r * 7919u;
    int ok = bound && np_blocks_fill(&blocks, budget, seed, 0x40 + r) == 0;
    if (w->together) pthread_barrier_wait(&barrier); /* everyone has written before anyone frees */
    if (ok) {
      if (w->together)
        snprintf(label, sizeof label, "node%d together, round %d%s", w->node, r,
                 r > 1 ? " (recycled)" : "");
      else
        snprintf(label, sizeof label, "node%d (%d ended before), round %d%s", w->node, w->ended, r,
                 r > 1 ? " (recycled)" : "");
      np_blocks_check(&blocks, label, w->node, need);
    }
    if (r < rounds) np_blocks_free(&blocks);
    if (w->together) pthread_barrier_wait(&barrier);
  }
  w->blocks = blocks;
  return NULL;
}

int main(int argc, char** argv) {
  int together = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-c"))
      together = 1;
    else if (!strcmp(argv[i], "-m") && i + 1 < argc)
      need = np_number(argv[++i], "percent");
    else if (!strcmp(argv[i], "-r") && i + 1 < argc)
      rounds = (int)np_number(argv[++i], "rounds");
    else if (!strcmp(argv[i], "-s") && i + 1 < argc)
      np_budget_arg(argv[++i], budget);
    else {
      fputs(usage, stderr);
      return NP_ERROR;
    }
  }
  if (np_start("numa_placement", 2) != 0) return np_finish(need);
  printf("numa_placement: %d rounds of %zu KiB small, %zu KiB medium, %zu KiB huge per thread\n",
         rounds, budget[NP_SMALL] / NP_KIB, budget[NP_MEDIUM] / NP_KIB, budget[NP_HUGE] / NP_KIB);

  static struct worker w[NP_MAX_NODES];
  pthread_t t[NP_MAX_NODES];
  if (together) {
    printf("one thread per node, all at once\n");
    pthread_barrier_init(&barrier, NULL, (unsigned)np_topo.n);
  } else {
    printf("one thread per node in turn, each ends before the next starts\n");
  }
  for (int i = 0; i < np_topo.n; i++) {
    w[i] = (struct worker){
        .node = np_topo.node[i].id, .index = i, .ended = together ? 0 : i, .together = together};
    np_thread(&t[i], work, &w[i]);
    if (!together) pthread_join(t[i], NULL);
  }
  for (int i = 0; together && i < np_topo.n; i++) pthread_join(t[i], NULL);
  if (together) pthread_barrier_destroy(&barrier);
  for (int i = 0; i < np_topo.n; i++) {
    np_blocks_free(&w[i].blocks);
    np_blocks_clear(&w[i].blocks);
  }
  return np_finish(need);
}
