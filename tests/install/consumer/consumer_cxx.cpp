// C++ consumer linked with mpcalloc: operator new and std::vector's storage come from mpcalloc.
// Prints one "ok:" line and exits 0, or "FAIL:" and exits 1.
#include <dlfcn.h>
#include <mpcalloc/mpcalloc.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

int main() {
  void* (*volatile op_new)(std::size_t) = &::operator new;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(op_new), &info) == 0 || info.dli_fname == nullptr ||
      std::strstr(info.dli_fname, "libmpcalloc") == nullptr) {
    std::printf("FAIL: operator new does not come from libmpcalloc: %s\n",
                info.dli_fname ? info.dli_fname : "?");
    return 1;
  }
  mpcalloc_stats_t before, during;
  mpcalloc_stats_get(&before);
  {
    std::vector<double> v(1 << 20, 1.5);  // 8 MiB: a huge block
    mpcalloc_stats_get(&during);
    if (v[12345] != 1.5) return 1;
  }
  if (during.huge_count != before.huge_count + 1) {
    std::printf("FAIL: std::vector storage did not show in mpcalloc_stats_get\n");
    return 1;
  }
  std::printf("ok: operator new from %s\n", info.dli_fname);
  return 0;
}
