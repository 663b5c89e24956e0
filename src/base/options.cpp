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

namespace {
constexpr long long kMaxOptionValue = 1ll << 60;  // 1 EiB, 36 million years of milliseconds

// ASCII case-insensitive whole-word match (no libc locale machinery).
bool same_word(const char* text, const char* word) {
  for (; *word != '\0'; ++text, ++word) {
    char c = *text;
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != *word) return false;
  }
  return *text == '\0';
}
}  // namespace

bool parse_option_value(const char* text, OptionType type, long long* out) {
  if (text == nullptr || *text == '\0') return false;
  if (type == OptionType::kBool) {
    static constexpr const char* kWords[2][5] = {{"0", "n", "no", "f", "false"},
                                                 {"1", "y", "yes", "t", "true"}};
    for (int value = 0; value < 2; ++value) {
      for (const char* w : kWords[value]) {
        if (same_word(text, w)) {
          *out = value;
          return true;
        }
      }
    }
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
    unsigned shift = 0;
    switch (*p) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      default: break;
    }
    if (shift != 0) {
      if (v > (__LONG_LONG_MAX__ >> shift)) return false;  // would wrap
      v <<= shift;
      ++p;
      if (*p == 'i' || *p == 'I') ++p;  // KiB, MiB, GiB
      if (*p == 'b' || *p == 'B') ++p;  // KB, MiB
    } else if (*p == 'b' || *p == 'B') {
      ++p;  // plain bytes: "4096B"
    }
  }
  if (*p != '\0') return false;
  if (v > kMaxOptionValue) return false;  // absurd (and near wrapping): keep the default
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
