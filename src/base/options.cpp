// The options table and its parsing.
#include "base/options.h"

#include "os/os_env.h"

namespace mpcalloc::base {
namespace {

constexpr OptionDesc kOptions[kOptCount] = {
    {"check", "MPCALLOC_CHECK", OptionType::kBool, 0,
     "Check every free: double free, invalid or interior pointer, overflow past the block "
     "(canary). Reports the address and aborts. Slower: every call takes the slow path."},
    {"verbose", "MPCALLOC_VERBOSE", OptionType::kBool, 0,
     "Print the effective option values on stderr at start-up."},
    {"stats", "MPCALLOC_STATS", OptionType::kBool, 0,
     "Print a statistics summary on stderr when the process exits."},
    {"cache_max", "MPCALLOC_CACHE_MAX", OptionType::kSize, 256ll << 20,
     "Most bytes of free OS blocks (segments, huge blocks) kept for reuse instead of being "
     "returned to the OS. 0 returns everything at once. Accepts K, M, G suffixes."},
    {"decay_ms", "MPCALLOC_DECAY_MS", OptionType::kMillis, 1000,
     "A cached free block unused for this many milliseconds is returned to the OS."},
};

constinit long long g_values[kOptCount] = {};
constinit bool g_loaded = false;

}  // namespace

const OptionDesc& option_desc(unsigned id) { return kOptions[id]; }

bool parse_option_value(const char* text, OptionType type, long long* out) {
  if (text == nullptr || *text == '\0') return false;
  if (type == OptionType::kBool) {
    const char c = *text;
    if (c == '1' || c == 'y' || c == 'Y' || c == 't' || c == 'T') { *out = 1; return true; }
    if (c == '0' || c == 'n' || c == 'N' || c == 'f' || c == 'F') { *out = 0; return true; }
    return false;
  }
  long long v = 0;
  const char* p = text;
  if (*p < '0' || *p > '9') return false;
  while (*p >= '0' && *p <= '9') {
    if (v > (1ll << 50)) return false;
    v = v * 10 + (*p++ - '0');
  }
  if (type == OptionType::kSize) {
    switch (*p) {
      case 'k': case 'K': v <<= 10; ++p; break;
      case 'm': case 'M': v <<= 20; ++p; break;
      case 'g': case 'G': v <<= 30; ++p; break;
      default: break;
    }
    if (*p == 'i' || *p == 'I') ++p;
    if (*p == 'b' || *p == 'B') ++p;
  }
  if (*p != '\0') return false;
  *out = v;
  return true;
}

void options_load() {
  if (g_loaded) return;
  for (unsigned i = 0; i < kOptCount; ++i) {
    long long v = kOptions[i].default_value;
    long long parsed;
    if (parse_option_value(os::env_get(kOptions[i].env), kOptions[i].type, &parsed)) v = parsed;
    g_values[i] = v;
  }
  g_loaded = true;
}

long long option(unsigned id) {
  if (!g_loaded) options_load();
  return id < kOptCount ? g_values[id] : -1;
}

}  // namespace mpcalloc::base
