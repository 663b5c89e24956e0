// Environment and clock without malloc.
#include "os/os_env.h"

#include <ctime>
#include <fcntl.h>
#include <unistd.h>

extern char** environ;

namespace mpcalloc::os {

const char* env_get(const char* name) {
  char** env = environ;
  if (env == nullptr) return nullptr;
  for (; *env != nullptr; ++env) {
    const char* e = *env;
    const char* n = name;
    while (*n != '\0' && *e == *n) {
      ++e;
      ++n;
    }
    if (*n == '\0' && *e == '=') return e + 1;
  }
  return nullptr;
}

const char* const* environment() { return environ; }

namespace {

// "123\n" -> 123; 0 for "max" or anything else.
uint64_t parse_limit(const char* s) {
  uint64_t v = 0;
  if (*s < '0' || *s > '9') return 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + static_cast<uint64_t>(*s++ - '0');
  return v;
}

// Appends a NUL-terminated string to path[0..len); false when it does not fit.
bool append(char* path, size_t& len, size_t cap, const char* s, size_t n) {
  if (len + n + 1 > cap) return false;
  for (size_t i = 0; i < n; ++i) path[len++] = s[i];
  path[len] = '\0';
  return true;
}

}  // namespace

size_t read_small_file(const char* path, char* buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += static_cast<size_t>(r);
  }
  close(fd);
  buf[n] = '\0';
  return n;
}

uint64_t cgroup_memory_limit() {
  char groups[4096];
  if (read_small_file("/proc/self/cgroup", groups, sizeof(groups)) == 0) return 0;
  // Lines "ID:CONTROLLERS:PATH": v2 is "0::PATH"; v1 names "memory" among the controllers.
  for (char* line = groups; *line != '\0';) {
    char* end = line;
    while (*end != '\0' && *end != '\n') ++end;
    char* c1 = line;
    while (c1 < end && *c1 != ':') ++c1;
    char* c2 = c1 < end ? c1 + 1 : end;
    while (c2 < end && *c2 != ':') ++c2;
    if (c2 < end) {
      const char* controllers = c1 + 1;
      size_t clen = static_cast<size_t>(c2 - controllers);
      const char* gpath = c2 + 1;
      size_t glen = static_cast<size_t>(end - gpath);
      bool v2 = clen == 0;
      bool v1_memory = false;
      for (const char* w = controllers; w < c2;) {
        const char* e = w;
        while (e < c2 && *e != ',') ++e;
        if (e - w == 6 && w[0] == 'm' && w[1] == 'e' && w[2] == 'm' && w[3] == 'o' && w[4] == 'r' && w[5] == 'y') v1_memory = true;
        w = e < c2 ? e + 1 : e;
      }
      if (v2 || v1_memory) {
        char path[512];
        size_t len = 0;
        const char* root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
        const char* file = v2 ? "/memory.max" : "/memory.limit_in_bytes";
        size_t rlen = 0, flen = 0;
        while (root[rlen] != '\0') ++rlen;
        while (file[flen] != '\0') ++flen;
        char value[64];
        if (append(path, len, sizeof(path), root, rlen) && append(path, len, sizeof(path), gpath, glen) &&
            append(path, len, sizeof(path), file, flen) && read_small_file(path, value, sizeof(value)) > 0) {
          uint64_t limit = parse_limit(value);
          // cgroup v1 writes a huge number (PAGE_COUNTER_MAX pages) for "no limit".
          if (limit != 0 && limit < (uint64_t{1} << 60)) return limit;
        }
      }
    }
    line = *end == '\n' ? end + 1 : end;
  }
  return 0;
}

uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

}  // namespace mpcalloc::os
