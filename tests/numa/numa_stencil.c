/* numa_stencil: an OpenMP-like 2-D stencil whose threads, bound per node, malloc and free their
 * tiles every step (the next tile's panels, a residual workspace, halo rows that the neighbour
 * frees, small task records); reports the share of each thread's pages on its node, not time. */
#include "numa_probe.h"

static const char usage[] =
    "usage: numa_stencil [-m PERCENT] [-n STEPS] [-p THREADS_PER_NODE] [-t TILE_KIB]\n"
    "  Threads, bound to the nodes in turn (default: one per CPU), own a tile of TILE_KIB\n"
    "  (default 1536) split in 4 row panels. Each step a thread mallocs the next tile's\n"
    "  panels, a workspace as big as the tile and 32 small task records, publishes its last\n"
    "  row in a halo buffer, computes the 5-point stencil (reading its predecessor's halo),\n"
    "  then frees the old tile, the workspace, the records and its predecessor's halo (a\n"
    "  remote free). STEPS default 8. PASS when every thread has at least PERCENT (default\n"
    "  99) of the pages it wrote on its node over all steps. Exit 0 PASS, 1 FAIL, 2 ERROR.\n";

enum { PANELS = 4, RECORDS = 32, COLS = 512 };

static double need = 99;
static int steps = 8, per_node;
static size_t tile_bytes = 1536 * NP_KIB;
static size_t rows, rows_per_panel;
static pthread_barrier_t barrier;

struct worker {
  int node, index, ok;
  double* halo_out; /* this step's last row, for the successor */
  struct np_tally sum;
  double residual;
};
static struct worker* workers;
static int nworkers;

static double* cell(double* const panel[PANELS], size_t r) {
  return panel[r / rows_per_panel] + (r % rows_per_panel) * COLS;
}

static void* work(void* arg) {
  struct worker* me = arg;
  struct worker* prev = &workers[(me->index + nworkers - 1) % nworkers];
  double *cur[PANELS] = {0}, *next[PANELS] = {0};
  size_t panel_bytes = rows_per_panel * COLS * sizeof(double);
  me->ok = np_bind(me->node) == 0;
  for (int p = 0; p < PANELS && me->ok; p++) {
    cur[p] = malloc(panel_bytes);
    if (!cur[p]) {
      np_error("malloc(%zu) returned NULL", panel_bytes);
      me->ok = 0;
      break;
    }
    for (size_t i = 0; i < rows_per_panel * COLS; i++)
      cur[p][i] = (double)((i + (size_t)me->index) % 17);
  }
  for (int s = 0; s < steps; s++) {
    struct np_pages pages = {NULL, 0, 0};
    double* ws = NULL;
    char* record[RECORDS] = {0};
    uint64_t rng = 0x57e9u + (uint64_t)s * 131u + (uint64_t)me->index;
    me->halo_out = NULL; /* the successor freed last step's */
    if (me->ok) {
      me->halo_out = malloc(COLS * sizeof(double));
      ws = malloc(tile_bytes);
      for (int p = 0; p < PANELS; p++) next[p] = malloc(panel_bytes);
      for (int i = 0; i < RECORDS; i++) record[i] = malloc(32 + np_random(&rng) % 481);
      int all = me->halo_out && ws;
      for (int p = 0; p < PANELS; p++) all = all && next[p];
      for (int i = 0; i < RECORDS; i++) all = all && record[i];
      if (!all) {
        np_error("malloc returned NULL in step %d", s);
        me->ok = 0;
      }
    }
    if (me->ok) {
      memcpy(me->halo_out, cell(cur, rows - 1), COLS * sizeof(double));
      for (int i = 0; i < RECORDS; i++) memset(record[i], s, 32);
    }
    pthread_barrier_wait(&barrier); /* every halo is published */
    if (me->ok && prev->ok) {
      for (size_t r = 0; r < rows; r++) {
        const double* up = r ? cell(cur, r - 1) : prev->halo_out;
        const double *row = cell(cur, r), *down = r + 1 < rows ? cell(cur, r + 1) : row;
        double *out = cell(next, r), *res = ws + r * COLS;
        for (size_t c = 0; c < COLS; c++) {
          double left = row[c ? c - 1 : c], right = row[c + 1 < COLS ? c + 1 : c];
          out[c] = 0.25 * (up[c] + down[c] + left + right);
          res[c] = out[c] - row[c];
        }
      }
      memset((char*)ws + rows * COLS * sizeof(double), 0,
             tile_bytes - rows * COLS * sizeof(double));
      for (size_t i = 0; i < rows * COLS; i++)
        if (ws[i] > me->residual || -ws[i] > me->residual)
          me->residual = ws[i] > 0 ? ws[i] : -ws[i];
      for (int p = 0; p < PANELS; p++) np_pages_add(&pages, next[p], panel_bytes);
      np_pages_add(&pages, ws, tile_bytes);
      np_pages_add(&pages, me->halo_out, COLS * sizeof(double));
      for (int i = 0; i < RECORDS; i++) np_pages_add(&pages, record[i], 32);
      struct np_tally t;
      if (np_locate(&pages, &t) == 0) {
        me->sum.pages += t.pages;
        me->sum.absent += t.absent;
        for (int n = 0; n < NP_MAX_NODES; n++) me->sum.on[n] += t.on[n];
      }
    }
    np_pages_clear(&pages);
    pthread_barrier_wait(&barrier); /* every neighbour has read the halos */
    for (int p = 0; p < PANELS; p++) {
      free(cur[p]);
      cur[p] = next[p];
      next[p] = NULL;
    }
    free(ws);
    for (int i = 0; i < RECORDS; i++) free(record[i]);
    free(prev->halo_out);           /* allocated by the predecessor, maybe on another node */
    pthread_barrier_wait(&barrier); /* before anyone publishes a new halo */
  }
  for (int p = 0; p < PANELS; p++) free(cur[p]);
  return NULL;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-m") && i + 1 < argc)
      need = np_number(argv[++i], "percent");
    else if (!strcmp(argv[i], "-n") && i + 1 < argc)
      steps = (int)np_number(argv[++i], "steps");
    else if (!strcmp(argv[i], "-p") && i + 1 < argc)
      per_node = (int)np_number(argv[++i], "threads");
    else if (!strcmp(argv[i], "-t") && i + 1 < argc)
      tile_bytes = (size_t)np_number(argv[++i], "KiB") * NP_KIB;
    else {
      fputs(usage, stderr);
      return NP_ERROR;
    }
  }
  if (np_start("numa_stencil", 2) != 0) return np_finish(need);
  rows_per_panel = tile_bytes / (PANELS * COLS * sizeof(double));
  if (rows_per_panel < 2) rows_per_panel = 2;
  rows = rows_per_panel * PANELS;
  tile_bytes = rows * COLS * sizeof(double);
  for (int i = 0; i < np_topo.n; i++) nworkers += per_node > 0 ? per_node : np_topo.node[i].ncpus;
  workers = np_map((size_t)nworkers * sizeof *workers);
  printf("numa_stencil: %d threads, tile %zu KiB in %d panels, %d steps\n", nworkers,
         tile_bytes / NP_KIB, PANELS, steps);
  pthread_t* t = np_map((size_t)nworkers * sizeof *t);
  pthread_barrier_init(&barrier, NULL, (unsigned)nworkers);
  for (int i = 0, k = 0; i < np_topo.n; i++) {
    int count = per_node > 0 ? per_node : np_topo.node[i].ncpus;
    for (int j = 0; j < count; j++, k++) {
      workers[k].node = np_topo.node[i].id;
      workers[k].index = k;
      np_thread(&t[k], work, &workers[k]);
    }
  }
  double residual = 0;
  for (int k = 0; k < nworkers; k++) pthread_join(t[k], NULL);
  for (int k = 0; k < nworkers; k++) {
    char label[96];
    snprintf(label, sizeof label, "thread %d on node%d, %d steps", k, workers[k].node, steps);
    if (workers[k].ok) np_check(label, &workers[k].sum, workers[k].node, need);
    if (workers[k].residual > residual) residual = workers[k].residual;
  }
  printf("numa_stencil: largest change of a cell over all steps %.6f\n", residual);
  pthread_barrier_destroy(&barrier);
  return np_finish(need);
}
