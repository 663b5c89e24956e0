/* Raises SIGUSR2 (MPCALLOC_STATS_SIGNAL) from the main thread, from a second thread, at the
 * main thread while it allocates and while it sleeps in read(2); after each, waits for one more
 * report in FILE (%p = pid). Usage: stats_signal_probe run FILE MARKER | stats_signal_probe taken */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { kSig = SIGUSR2 };
static char g_path[4096];
static const char* g_marker;
static pthread_t g_main;
static pid_t g_main_tid;
static atomic_int g_done;

static void die(const char* what) {
  fprintf(stderr, "probe: FAIL: %s\n", what);
  exit(1);
}

/* Reports in the file so far: occurrences of the marker. */
static int reports(void) {
  static char buf[1 << 20];
  int fd = open(g_path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  int count = 0;
  for (const char* p = buf; (p = strstr(p, g_marker)) != NULL; p += strlen(g_marker)) count++;
  return count;
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits for report number `want` (a signal sent to another thread is handled asynchronously).
 * The bound only keeps a broken build from hanging the suite. */
static void await_report(int want, const char* what) {
  for (int i = 0; i < 30000 && reports() < want; i++) pause_ms(1);
  if (reports() != want) {
    fprintf(stderr, "probe: FAIL: %s: %d reports, want %d\n", what, reports(), want);
    exit(1);
  }
}

static void* raiser(void* arg) {
  int have = *(int*)arg;
  for (int i = 0; i < 3; i++) {  /* on this thread: handled before raise returns */
    raise(kSig);
    if (reports() != ++have) die("a report on the second thread did not come at once");
  }
  for (int i = 0; i < 3; i++) {  /* at the main thread, busy allocating */
    pthread_kill(g_main, kSig);
    await_report(++have, "signal sent to the allocating main thread");
  }
  atomic_store(&g_done, 1);
  return NULL;
}

/* The main thread's busy loop: small, medium and huge blocks, reallocs, contents checked. */
static void churn(void) {
  enum { kSlots = 64 };
  unsigned char* slot[kSlots] = {0};
  size_t size[kSlots] = {0};
  unsigned x = 12345;
  /* At least 1000 rounds (the sequence is fixed: huge blocks among them), then until done. */
  for (int round = 0; round < 1000 || !atomic_load(&g_done); round++) {
    x = x * 1103515245u + 12345u;
    int i = (int)((x >> 8) % kSlots);
    if (slot[i] != NULL) {
      for (size_t k = 0; k < size[i]; k += 4096) {
        if (slot[i][k] != (unsigned char)i) die("block contents changed");
      }
      free(slot[i]);
    }
    unsigned kind = (x >> 20) % 16;
    size[i] = kind < 10 ? 16 + (x >> 4) % 1000 : kind < 15 ? ((x >> 4) % 512) << 10 : (2 + (x >> 4) % 4) << 20;
    slot[i] = malloc(size[i]);
    if (slot[i] == NULL) die("malloc");
    for (size_t k = 0; k < size[i]; k += 4096) slot[i][k] = (unsigned char)i;
    if (kind == 14) {
      size[i] += 3 << 20;
      unsigned char* grown = realloc(slot[i], size[i]);
      if (grown == NULL) die("realloc");
      slot[i] = grown;
      for (size_t k = 0; k < size[i]; k += 4096) grown[k] = (unsigned char)i;
    }
  }
  for (int i = 0; i < kSlots; i++) free(slot[i]);
}

/* Whether the main thread is blocked in read(2): /proc/.../syscall starts with its number. */
static int main_in_read(void) {
  char path[64], buf[64];
  snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)g_main_tid);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  return strncmp(buf, "0 ", 2) == 0;
}

static int g_pipe[2];
static int g_have;

static void* interrupter(void* arg) {
  (void)arg;
  int state;
  for (int i = 0; i < 30000 && (state = main_in_read()) == 0; i++) pause_ms(1);
  if (state != 1) die("the main thread never blocked in read (or /proc/self/task/*/syscall is unreadable)");
  pthread_kill(g_main, kSig);
  await_report(++g_have, "signal sent to the main thread blocked in read");
  if (write(g_pipe[1], "x", 1) != 1) die("write to pipe");
  return NULL;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "taken") == 0) {
    /* The parent left the signal ignored: mpcalloc must not have put its handler in. */
    struct sigaction sa;
    if (sigaction(kSig, NULL, &sa) != 0 || sa.sa_handler != SIG_IGN) die("SIGUSR2 is no longer ignored");
    raise(kSig);
    printf("still ignored\n");
    return 0;
  }
  if (argc != 4 || strcmp(argv[1], "run") != 0) die("usage: run FILE MARKER | taken");
  /* FILE with %p replaced by our pid, as mpcalloc names it. */
  const char* pct = strstr(argv[2], "%p");
  if (pct != NULL) {
    snprintf(g_path, sizeof(g_path), "%.*s%d%s", (int)(pct - argv[2]), argv[2], (int)getpid(), pct + 2);
  } else {
    snprintf(g_path, sizeof(g_path), "%s", argv[2]);
  }
  g_marker = argv[3];
  g_main = pthread_self();
  g_main_tid = (pid_t)syscall(SYS_gettid);

  int have = 0;
  for (int i = 0; i < 2; i++) {
    raise(kSig);
    if (reports() != ++have) die("a report on the main thread did not come before raise returned");
  }
  pthread_t t;
  if (pthread_create(&t, NULL, raiser, &have) != 0) die("pthread_create");
  churn();
  pthread_join(t, NULL);
  have += 6;

  /* SA_RESTART: a read the signal interrupts goes on instead of failing with EINTR. */
  if (pipe(g_pipe) != 0) die("pipe");
  g_have = have;
  if (pthread_create(&t, NULL, interrupter, NULL) != 0) die("pthread_create");
  char c;
  ssize_t n = read(g_pipe[0], &c, 1);
  if (n != 1) die(n < 0 && errno == EINTR ? "read failed with EINTR: the handler lacks SA_RESTART" : "read");
  pthread_join(t, NULL);
  have = g_have;
  printf("signal reports %d\n", have);
  return 0;
}
