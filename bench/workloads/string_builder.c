/* Realloc-heavy string builder: many strings grown by appending small pieces with realloc
 * (exact-size growth, as naive code does), some to megabytes, then hashed and freed. */
#include <string.h>

#include "workload.h"

int main(int argc, char** argv) {
  int strings = (int)(9000 * workload_scale(argc, argv));
  rng_t r = {4242};
  uint64_t h = 1469598103934665603ull;
  for (int s = 0; s < strings; s++) {
    size_t target = (s % 100 == 0) ? (size_t)(2 << 20) : 64 + rng_below(&r, 20000);
    char* str = NULL;
    size_t len = 0;
    while (len < target) {
      size_t piece = 1 + rng_below(&r, 24);
      char* grown = realloc(str, len + piece + 1);
      if (grown == NULL) fail("realloc");
      str = grown;
      for (size_t k = 0; k < piece; k++) str[len + k] = (char)('a' + (len + k) % 26);
      len += piece;
      str[len] = 0;
    }
    for (size_t k = 0; k < len; k += 61) h = (h ^ (unsigned char)str[k]) * 1099511628211ull;
    if (str[len - 1] != (char)('a' + (len - 1) % 26)) fail("contents lost in realloc");
    free(str);
  }
  printf("string_builder %llu\n", (unsigned long long)h);
  return 0;
}
