/* Tree builder (barnes-like): build a large octree of bodies, walk it, free it, repeat. */
#include <string.h>

#include "workload.h"

typedef struct cell {
  struct cell* child[8];
  double mass, x, y, z;
  int body;
} cell_t;

static cell_t* new_cell(void) {
  cell_t* c = xmalloc(sizeof(cell_t));
  memset(c, 0, sizeof(*c));
  c->body = -1;
  return c;
}

static void insert(cell_t* c, double x, double y, double z, double size, int id, int depth) {
  c->mass += 1.0;
  c->x += x;
  c->y += y;
  c->z += z;
  if (depth == 12) return;
  if (c->body < 0 && c->mass == 1.0) {
    c->body = id;
    return;
  }
  double h = size / 2;
  int o = (x >= h) | ((y >= h) << 1) | ((z >= h) << 2);
  if (c->child[o] == NULL) c->child[o] = new_cell();
  insert(c->child[o], x >= h ? x - h : x, y >= h ? y - h : y, z >= h ? z - h : z, h, id, depth + 1);
}

static double walk_free(cell_t* c, long* cells) {
  double m = c->mass;
  (*cells)++;
  for (int i = 0; i < 8; i++) {
    if (c->child[i] != NULL) walk_free(c->child[i], cells);
  }
  free(c);
  return m;
}

int main(int argc, char** argv) {
  int rounds = (int)(12 * workload_scale(argc, argv));
  if (rounds < 1) rounds = 1;
  rng_t r = {99};
  long cells_total = 0;
  double mass = 0;
  for (int round = 0; round < rounds; round++) {
    cell_t* root = new_cell();
    for (int b = 0; b < 150000; b++) {
      double x = (double)rng_below(&r, 1 << 20) / (1 << 20);
      double y = (double)rng_below(&r, 1 << 20) / (1 << 20);
      double z = (double)rng_below(&r, 1 << 20) / (1 << 20);
      insert(root, x, y, z, 1.0, b, 0);
    }
    long cells = 0;
    mass += walk_free(root, &cells);
    cells_total += cells;
  }
  if (mass != 150000.0 * rounds) fail("mass not conserved");
  printf("tree_build %ld\n", cells_total);
  return 0;
}
