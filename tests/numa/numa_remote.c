/* numa_remote: a thread of node k frees the blocks of node k-1's thread (remote free), then every
 * thread allocates again: does each still get memory of its own node? Run in numa-vm; works
 * under any malloc (LD_PRELOAD). */
#include "numa_probe.h"

static const char usage[] =
    "usage: numa_remote [-m PERCENT] [-s SMALL,MEDIUM,HUGE]\n"
    "  One thread per node, all alive, each bound to its node. 1: each mallocs and writes\n"
    "  SMALL MiB of 16 B-1 KiB blocks, MEDIUM MiB of 8 KiB-1 MiB, HUGE MiB of 2-16 MiB\n"
    "  (default 4,8,8). 2: the thread of node k frees the blocks of node k-1 (node0's are\n"
    "  freed by node1's thread, the last node keeps its own). 3: each thread in turn, the\n"
    "  last node's first (a freeing thread before the owner of what it freed), mallocs and\n"
    "  writes the same amounts again. PASS when every check is at least PERCENT (default 99)\n"
    "  local. Exit 0 PASS, 1 FAIL, 2 ERROR.\n";

static size_t budget[NP_KINDS] = {4 * NP_MIB, 8 * NP_MIB, 8 * NP_MIB};
static double need = 99;
static pthread_barrier_t barrier;

struct worker {
  int node, index, ok;
  struct np_blocks first, second;
};
static struct worker w[NP_MAX_NODES];

static void* work(void* arg) {
  struct worker* me = arg;
  char label[96];
  me->ok = np_bind(me->node) == 0;
  uint64_t seed = 0xabcdu + (uint64_t)me->index * 977u;
  me->ok = me->ok && np_blocks_fill(&me->first, budget, seed, 0x61) == 0;
  if (me->ok) {
    snprintf(label, sizeof label, "node%d, own blocks (fresh)", me->node);
    np_blocks_check(&me->first, label, me->node, need);
  }
  pthread_barrier_wait(&barrier);
  struct worker* prev = me->index > 0 ? &w[me->index - 1] : NULL;
  if (prev) np_blocks_free(&prev->first); /* remote frees: prev's blocks, prev still alive */
  pthread_barrier_wait(&barrier);
  for (int turn = np_topo.n - 1; turn >= 0; turn--) { /* the freer before the owner */
    if (turn == me->index)
      me->ok = me->ok && np_blocks_fill(&me->second, budget, seed + 1, 0x62) == 0;
    pthread_barrier_wait(&barrier);
  }
  if (me->ok) {
    int next = me->index + 1 < np_topo.n;
    if (prev && next)
      snprintf(label, sizeof label, "node%d, after freeing node%d's, its own freed", me->node,
               prev->node);
    else if (prev)
      snprintf(label, sizeof label, "node%d, after freeing node%d's blocks", me->node, prev->node);
    else
      snprintf(label, sizeof label, "node%d, after node%d freed its blocks", me->node, w[1].node);
    np_blocks_check(&me->second, label, me->node, need);
  }
  pthread_barrier_wait(&barrier);
  np_blocks_free(&me->second);
  if (me->index + 1 == np_topo.n) np_blocks_free(&me->first);
  return NULL;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-m") && i + 1 < argc)
      need = np_number(argv[++i], "percent");
    else if (!strcmp(argv[i], "-s") && i + 1 < argc)
      np_budget_arg(argv[++i], budget);
    else {
      fputs(usage, stderr);
      return NP_ERROR;
    }
  }
  if (np_start("numa_remote", 2) != 0) return np_finish(need);
  printf("numa_remote: %zu KiB small, %zu KiB medium, %zu KiB huge per thread and round\n",
         budget[NP_SMALL] / NP_KIB, budget[NP_MEDIUM] / NP_KIB, budget[NP_HUGE] / NP_KIB);
  pthread_t t[NP_MAX_NODES];
  pthread_barrier_init(&barrier, NULL, (unsigned)np_topo.n);
  for (int i = 0; i < np_topo.n; i++) {
    w[i].node = np_topo.node[i].id;
    w[i].index = i;
    np_thread(&t[i], work, &w[i]);
  }
  for (int i = 0; i < np_topo.n; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < np_topo.n; i++) {
    np_blocks_clear(&w[i].first);
    np_blocks_clear(&w[i].second);
  }
  pthread_barrier_destroy(&barrier);
  return np_finish(need);
}
