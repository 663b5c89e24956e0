/* Small-object churn (cfrac/espresso-like): many tiny short-lived objects (8-128 B) built
 * into short linked structures and dropped, with a small long-lived window. */
#include <string.h>

#include "workload.h"

typedef struct node {
  struct node* next;
  uint32_t len;
  unsigned char data[];
} node_t;

int main(int argc, char** argv) {
  long iters = (long)(18e6 * workload_scale(argc, argv));
  rng_t r = {0x1234567};
  enum { W = 1024 };
  node_t* window[W] = {0};
  uint64_t sum = 0;
  for (long i = 0; i < iters; i++) {
    /* a short chain of temporaries, like a bignum expression */
    node_t* head = NULL;
    int k = 1 + (int)rng_below(&r, 4);
    for (int j = 0; j < k; j++) {
      uint32_t len = 8 + (uint32_t)rng_below(&r, 112);
      node_t* n = xmalloc(sizeof(node_t) + len);
      n->len = len;
      n->data[0] = (unsigned char)len;
      n->data[len - 1] = (unsigned char)j;
      n->next = head;
      head = n;
    }
    /* keep the last one in the window, free the rest */
    size_t w = rng_below(&r, W);
    if (window[w] != NULL) {
      if (window[w]->data[0] != (unsigned char)window[w]->len) fail("window corrupted");
      sum += window[w]->len;
      free(window[w]);
    }
    window[w] = head;
    node_t* rest = head->next;
    head->next = NULL;
    while (rest != NULL) {
      node_t* nx = rest->next;
      sum += rest->data[rest->len - 1];
      free(rest);
      rest = nx;
    }
  }
  for (int w = 0; w < W; w++) free(window[w]);
  printf("churn_small %llu\n", (unsigned long long)sum);
  return 0;
}
