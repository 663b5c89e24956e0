/* Misuses the allocator in the way named by argv[1], after printing the pointer it is about to
 * misuse as "addr=<%p>" on stdout. Run with MPCALLOC_CHECK=1 by checks_test (linked with the
 * override library, so plain free() is mpcalloc's). "valid", "valid-threads" and "valid-fork"
 * use the allocator correctly and must run clean. Built with -O0 -fno-builtin so every call
 * happens; misused pointers pass through opaque() so the compiler cannot see (or warn about) them. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void* volatile sink;
static char global_buffer[256];

static void say(const void* p) {
  char line[64];
  int n = snprintf(line, sizeof line, "addr=%p\n", p);
  if (write(1, line, (size_t)n) != n) _exit(3);
}

static void* opaque(void* p) {
  sink = p;
  return sink;
}

static size_t size_for(const char* m) {
  if (strstr(m, "small") != NULL) return 40;
  if (strstr(m, "medium") != NULL) return 50000;
  return (size_t)5 << 20; /* huge */
}

/* Correct use from several threads, with blocks freed by other threads than their owner. */
#define VT_THREADS 4
#define VT_BLOCKS 2000
static void* handed[VT_THREADS][VT_BLOCKS];

static void* valid_thread(void* arg) {
  int id = (int)(intptr_t)arg;
  unsigned seed = (unsigned)id + 1;
  for (int i = 0; i < VT_BLOCKS; i++) {
    size_t n = (size_t)(rand_r(&seed) % 3 == 0 ? rand_r(&seed) % 200000 : rand_r(&seed) % 600) + 1;
    char* p = malloc(n);
    memset(p, 0x11, malloc_usable_size(p)); /* all of the usable size is the program's */
    if (i % 4 == 0) {
      p = realloc(p, n * 2);
      memset(p, 0x22, n * 2);
    }
    handed[id][i] = p;
  }
  return NULL;
}

static int valid(int threads) {
  for (int i = 0; i < 1000; i++) {
    char* a = malloc((size_t)i * 97 + 1);
    memset(a, 1, (size_t)i * 97 + 1);
    a = realloc(a, (size_t)i * 13 + 1);
    memset(a, 2, (size_t)i * 13 + 1);
    free(a);
  }
  void* c = calloc(10, 1000);
  free(c);
  void* al = NULL;
  if (posix_memalign(&al, 4096, 3000) != 0) return 1;
  memset(al, 3, 3000);
  free(al);
  al = aligned_alloc(64, 640);
  memset(al, 4, 640);
  free(al);
  char* h = malloc((size_t)9 << 20);
  memset(h, 5, malloc_usable_size(h));
  h = realloc(h, (size_t)20 << 20);
  h = realloc(h, (size_t)3 << 20);
  free(h);
  free(NULL);
  if (threads) {
    pthread_t t[VT_THREADS];
    for (int i = 0; i < VT_THREADS; i++) pthread_create(&t[i], NULL, valid_thread, (void*)(intptr_t)i);
    for (int i = 0; i < VT_THREADS; i++) pthread_join(t[i], NULL);
    /* Everything freed here, by a thread that owns none of it. */
    for (int i = 0; i < VT_THREADS; i++)
      for (int k = 0; k < VT_BLOCKS; k++) free(handed[i][k]);
  }
  puts("clean");
  return 0;
}

/* Fork while other threads free the forking thread's medium blocks: in checked mode each such
 * free validates the block under its owner heap's check lock, so the fork must not leave that
 * lock held in the child (the child's first medium call would spin forever). */
#define VF_SLOTS 512
#define VF_FREERS 2
#if MPCALLOC_TEST_EMULATED /* under qemu-user (cross builds) a fork costs milliseconds */
#define VF_FORKS 60
#else
#define VF_FORKS 300
#endif
static void* vf_slot[VF_SLOTS];
static int vf_stop;

static void* vf_freer(void* arg) {
  unsigned i = (unsigned)(intptr_t)arg;
  while (!__atomic_load_n(&vf_stop, __ATOMIC_ACQUIRE)) {
    void* p = __atomic_exchange_n(&vf_slot[i++ % VF_SLOTS], NULL, __ATOMIC_ACQ_REL);
    free(p);
  }
  return NULL;
}

static int valid_fork(void) {
  pthread_t t[VF_FREERS];
  for (int i = 0; i < VF_FREERS; i++) pthread_create(&t[i], NULL, vf_freer, (void*)(intptr_t)(i * 97));
  int bad = 0;
  for (int round = 0; round < VF_FORKS; round++) {
    for (int k = 0; k < VF_SLOTS; k++) {
      if (__atomic_load_n(&vf_slot[k], __ATOMIC_ACQUIRE) != NULL) continue;
      void* p = malloc(20000 + (size_t)k * 61);
      memset(p, 7, 64);
      __atomic_store_n(&vf_slot[k], p, __ATOMIC_RELEASE);
    }
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      alarm(10); /* a lock left held by the fork hangs here: SIGALRM instead */
      for (int k = 0; k < 50; k++) {
        void* q = malloc(30000 + (size_t)k * 100);
        if (q == NULL) _exit(2);
        memset(q, 9, 30000);
        free(q);
      }
      _exit(0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      if (bad++ == 0) fprintf(stderr, "valid-fork: child %d ended with status %d\n", round, st);
    }
  }
  __atomic_store_n(&vf_stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < VF_FREERS; i++) pthread_join(t[i], NULL);
  for (int k = 0; k < VF_SLOTS; k++) free(vf_slot[k]);
  if (bad != 0) return 1;
  puts("clean");
  return 0;
}

static void* free_own_stack(void* arg) {
  int on_stack = 0;
  (void)arg;
  say(&on_stack);
  free(opaque(&on_stack));
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* m = argv[1];
  if (strcmp(m, "valid") == 0) return valid(0);
  if (strcmp(m, "valid-threads") == 0) return valid(1);
  if (strcmp(m, "valid-fork") == 0) return valid_fork();

  size_t n = size_for(m);
  char* p = malloc(n);
  memset(p, 1, n);
  int local = 0;
  if (strcmp(m, "double-calloc") == 0) {
    char* c = calloc(7, 9);
    say(c);
    free(c);
    free(opaque(c));
  } else if (strcmp(m, "double-aligned") == 0) {
    void* a = NULL;
    if (posix_memalign(&a, 4096, 100) != 0) return 1;
    say(a);
    free(a);
    free(opaque(a));
  } else if (strcmp(m, "overflow8-small") == 0) {
    say(p);
    memset(p + n, 0, 8); /* a whole word past the end */
    free(p);
  } else if (strcmp(m, "overflow-aligned") == 0) {
    char* a = aligned_alloc(256, 512);
    memset(a, 1, 512);
    say(a);
    a[512] = 0x5a;
    free(a);
  } else if (strcmp(m, "overflow-after-realloc") == 0) {
    char* q = realloc(p, 30); /* shrunk: the end moved */
    say(q);
    memset(q, 2, 31);
    free(q);
  } else if (strcmp(m, "wild-stack") == 0) {
    say(&local);
    free(opaque(&local));
  } else if (strcmp(m, "wild-global") == 0) {
    say(global_buffer + 16);
    free(opaque(global_buffer + 16));
  } else if (strcmp(m, "wild-libc-data") == 0) { /* a FILE inside libc's data */
    say(stdout);
    free(opaque(stdout));
  } else if (strcmp(m, "wild-thread-stack") == 0) {
    pthread_t t;
    pthread_create(&t, NULL, free_own_stack, NULL);
    pthread_join(t, NULL);
  } else if (strcmp(m, "wild-mmap") == 0) { /* memory the allocator never handed out */
    char* w = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) return 1;
    say(w + 64);
    free(opaque(w + 64));
  } else if (strcmp(m, "wild-unmapped") == 0) {
    void* w = (void*)(uintptr_t)0x10000000000ull;
    say(w);
    free(opaque(w));
  } else if (strcmp(m, "realloc-double") == 0) {
    say(p);
    free(p);
    sink = realloc(opaque(p), 100);
  } else if (strcmp(m, "realloc-interior") == 0) {
    say(p + 8);
    sink = realloc(opaque(p + 8), 100);
  } else if (strcmp(m, "realloc-wild") == 0) {
    say(&local);
    sink = realloc(opaque(&local), 100);
  } else if (strncmp(m, "double-", 7) == 0) { /* double-small, double-medium, double-huge */
    say(p);
    free(p);
    free(opaque(p));
  } else if (strncmp(m, "interior8-", 10) == 0) { /* malloc'd pointer + 8 */
    say(p + 8);
    free(opaque(p + 8));
  } else if (strncmp(m, "interior-", 9) == 0) {
    say(p + 16);
    free(opaque(p + 16));
  } else if (strncmp(m, "overflow-", 9) == 0) {
    say(p);
    p[n] = 0x5a; /* one byte past the end */
    free(p);
  } else {
    return 2;
  }
  puts("not detected");
  return 0;
}
