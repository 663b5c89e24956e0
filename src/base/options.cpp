// The options table, its parsing, MPCALLOC_CONF and the warnings for what cannot be used.
#include "base/options.h"

#include <csignal>

#include "os/os_env.h"
#include "os/os_message.h"

namespace mpcalloc::base {
namespace {

constexpr OptionDesc kOptions[kOptCount] = {
    {"check", "MPCALLOC_CHECK", OptionType::kBool, 0, nullptr, false,
     "Check every free: double free, invalid or interior pointer, overflow past the block "
     "(canary). Reports the address and aborts. Slower: every call takes the slow path."},
    {"verbose", "MPCALLOC_VERBOSE", OptionType::kBool, 0, nullptr, false,
     "Print the effective option values on stderr at start-up."},
    {"stats", "MPCALLOC_STATS", OptionType::kOutput, kOutputOff, nullptr, false,
     "Print statistics when the process exits: `1` or `text` (human), `json`; on stderr, or "
     "into a file with `text:PATH` / `json:PATH` (`%p` in PATH becomes the process id, so MPI "
     "ranks and forked children write their own)."},
    {"cache_max", "MPCALLOC_CACHE_MAX", OptionType::kSize, 64ll << 20, nullptr, true,
     "Free OS blocks (segments, huge blocks) each place (NUMA node) may keep for reuse beyond "
     "its recent peak: a place caches up to what it had in use at its peak over the last one "
     "or two decay times (plus 1/8) minus what it uses now, and at least this much. 0 keeps "
     "nothing: every free block goes back to the OS at once."},
    {"decay_ms", "MPCALLOC_DECAY_MS", OptionType::kMillis, 1000, nullptr, true,
     "A cached free block unused for this many milliseconds is returned to the OS; so are "
     "the pages of free medium chunks and of unused small runs inside segments still in use, "
     "at the owning thread's maintenance."},
    {"numa", "MPCALLOC_NUMA", OptionType::kChoice, kNumaAuto, "auto|off|strict|interleave", false,
     "NUMA placement. `auto`: with more than one node, a thread bound to one node's CPUs gets "
     "memory of that node (also when memory is recycled), unbound threads get first-touch "
     "memory; `off`: no NUMA handling; `strict`: like auto, and a bound thread never gets "
     "memory placed on another node, even under memory pressure; `interleave`: like auto, and "
     "huge blocks (over 1 MiB) are interleaved over the nodes."},
    {"mem_limit", "MPCALLOC_MEM_LIMIT", OptionType::kLimit, 0, nullptr, true,
     "Most bytes mapped from the OS (0: no limit). An allocation that would pass it first "
     "returns cached memory, then fails cleanly (NULL and ENOMEM, std::bad_alloc for new) "
     "instead of the job being killed. `auto`: the memory limit of the process's cgroup "
     "(v2 memory.max, v1 memory.limit_in_bytes), when there is one."},
    {"purge", "MPCALLOC_PURGE", OptionType::kChoice, kPurgeDontneed, "dontneed|free", true,
     "How free pages go back to the OS: `dontneed` (MADV_DONTNEED: RSS drops at once, a reuse "
     "faults zero pages in) or `free` (MADV_FREE: the kernel takes them when it needs memory; "
     "cheaper to reuse, but RSS drops only under pressure)."},
    {"thp", "MPCALLOC_THP", OptionType::kChoice, kThpDefault, "default|never|madvise|always", false,
     "Transparent huge pages for mpcalloc's memory: `default` leaves it to the system setting, "
     "`never` asks for none (MADV_NOHUGEPAGE), `madvise` asks for them on huge blocks only, "
     "`always` on segments and huge blocks (MADV_HUGEPAGE)."},
    {"background", "MPCALLOC_BACKGROUND", OptionType::kAuto, kAutoValue, nullptr, false,
     "A background thread returns decayed memory to the OS even when the program makes no "
     "allocation (a rank waiting in MPI). `auto`: started the first time a place keeps more "
     "than MPCALLOC_CACHE_MAX of free memory for reuse, or when a thread that freed many "
     "blocks of other threads ends (their owners may be waiting and make no call that "
     "would collect them); a program that does neither gets no thread. 1: started at the first allocation; 0: never. Restarted after fork."},
    {"stats_signal", "MPCALLOC_STATS_SIGNAL", OptionType::kSignal, 0, nullptr, false,
     "Print the statistics (in MPCALLOC_STATS's format and place, stderr by default) when this "
     "signal arrives, e.g. `USR2` or `SIGUSR2`; 0 for none."},
};

constexpr long long kMaxOptionValue = 1ll << 60;  // 1 EiB, 36 million years of milliseconds
constexpr const char* kConfEnv = "MPCALLOC_CONF";

constinit long long g_values[kOptCount] = {};
constinit char g_paths[kOptCount][kOptionPathMax] = {};
constinit bool g_loaded = false;

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// ASCII case-insensitive match of text[0..len) with a whole word (no libc locale machinery).
bool same_word(const char* text, size_t len, const char* word) {
  size_t i = 0;
  for (; i < len && word[i] != '\0'; ++i) {
    if (lower(text[i]) != word[i]) return false;
  }
  return i == len && word[i] == '\0';
}
size_t length(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}
bool same_name(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}

// Index of text[0..len) among the '|'-separated words, or -1.
long long choice_index(const char* choices, const char* text, size_t len) {
  long long index = 0;
  for (const char* w = choices; *w != '\0'; ++index) {
    const char* end = w;
    while (*end != '\0' && *end != '|') ++end;
    char word[32];
    size_t n = static_cast<size_t>(end - w) < sizeof(word) - 1 ? static_cast<size_t>(end - w) : sizeof(word) - 1;
    for (size_t i = 0; i < n; ++i) word[i] = w[i];
    word[n] = '\0';
    if (same_word(text, len, word)) return index;
    w = *end == '|' ? end + 1 : end;
  }
  return -1;
}

void warn(const char* what, const char* name, const char* value, const char* why) {
  os::Message m;
  m.text("mpcalloc: warning: ").text(what).text(name);
  if (value != nullptr) m.text("=").text(value);
  m.text(": ").text(why).text("\n");
  m.write_to(2);
}

const char* expected_form(const OptionDesc& d) {
  switch (d.type) {
    case OptionType::kBool: return "expected 0/1, yes/no or true/false; default kept";
    case OptionType::kSize: return "expected a size such as 4096, 64K, 256M or 2G; default kept";
    case OptionType::kMillis: return "expected milliseconds (digits only); default kept";
    case OptionType::kChoice: return "expected one of the documented words; default kept";
    case OptionType::kOutput: return "expected 0, 1, text, json, text:PATH or json:PATH; default kept";
    case OptionType::kLimit: return "expected 0, auto, or a size such as 512M or 4G; default kept";
    case OptionType::kSignal: return "expected 0, a signal number or a name such as USR2; default kept";
    case OptionType::kAuto: return "expected auto, 0/1, yes/no or true/false; default kept";
  }
  return "default kept";
}

void store(unsigned id, long long v) { __atomic_store_n(&g_values[id], v, __ATOMIC_RELAXED); }

// Applies "name=value" entries of MPCALLOC_CONF, separated by ',' (or whitespace).
void load_conf(const char* conf) {
  const char* p = conf;
  while (*p != '\0') {
    while (*p == ',' || *p == ' ' || *p == '\t') ++p;
    if (*p == '\0') break;
    const char* entry = p;
    while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t') ++p;
    char buf[kOptionPathMax + 64];
    size_t n = static_cast<size_t>(p - entry) < sizeof(buf) - 1 ? static_cast<size_t>(p - entry) : sizeof(buf) - 1;
    for (size_t i = 0; i < n; ++i) buf[i] = entry[i];
    buf[n] = '\0';
    char* eq = buf;
    while (*eq != '\0' && *eq != '=') ++eq;
    if (*eq != '=') {
      warn("MPCALLOC_CONF entry ", buf, nullptr, "expected name=value; ignored");
      continue;
    }
    *eq = '\0';
    unsigned id = option_find(buf);
    if (id == kOptCount) {
      warn("unknown option in MPCALLOC_CONF: ", buf, eq + 1, "ignored");
      continue;
    }
    long long v;
    if (parse_option(kOptions[id], eq + 1, &v, g_paths[id])) store(id, v);
    else warn("MPCALLOC_CONF: ", buf, eq + 1, expected_form(kOptions[id]));
  }
}

}  // namespace

const OptionDesc& option_desc(unsigned id) { return kOptions[id]; }

unsigned option_find(const char* name) {
  if (name == nullptr) return kOptCount;
  for (unsigned i = 0; i < kOptCount; ++i) {
    if (same_name(kOptions[i].name, name) || same_name(kOptions[i].env, name)) return i;
  }
  return kOptCount;
}

bool parse_option_value(const char* text, OptionType type, long long* out) {
  if (text == nullptr || *text == '\0') return false;
  size_t len = length(text);
  if (type == OptionType::kBool) {
    static constexpr const char* kWords[2][5] = {{"0", "n", "no", "f", "false"},
                                                 {"1", "y", "yes", "t", "true"}};
    for (int value = 0; value < 2; ++value) {
      for (const char* w : kWords[value]) {
        if (same_word(text, len, w)) {
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

bool parse_option(const OptionDesc& d, const char* text, long long* out, char* path) {
  if (text == nullptr || *text == '\0') return false;
  if (d.type == OptionType::kChoice) {
    long long i = choice_index(d.choices, text, length(text));
    if (i < 0) return false;
    *out = i;
    return true;
  }
  if (d.type == OptionType::kLimit) {
    if (same_word(text, length(text), "auto")) {
      *out = kLimitAuto;
      return true;
    }
    return parse_option_value(text, OptionType::kSize, out);
  }
  if (d.type == OptionType::kAuto) {
    if (same_word(text, length(text), "auto")) {
      *out = kAutoValue;
      return true;
    }
    return parse_option_value(text, OptionType::kBool, out);
  }
  if (d.type == OptionType::kSignal) {
    long long n;
    if (parse_option_value(text, OptionType::kMillis, &n)) {
      if (n > 64) return false;
      *out = n;
      return true;
    }
    const char* name = text;
    if (same_word(text, 3, "sig")) name += 3;
    static constexpr struct { const char* name; int number; } kSignals[] = {
        {"hup", SIGHUP}, {"usr1", SIGUSR1}, {"usr2", SIGUSR2},
        {"urg", SIGURG}, {"winch", SIGWINCH}, {"pwr", SIGPWR}};
    for (const auto& sig : kSignals) {
      if (same_word(name, length(name), sig.name)) {
        *out = sig.number;
        return true;
      }
    }
    return false;
  }
  if (d.type != OptionType::kOutput) return parse_option_value(text, d.type, out);
  const char* colon = text;
  while (*colon != '\0' && *colon != ':') ++colon;
  size_t word = static_cast<size_t>(colon - text);
  long long format;
  if (same_word(text, word, "text")) format = kOutputText;
  else if (same_word(text, word, "json")) format = kOutputJson;
  else if (*colon == '\0' && parse_option_value(text, OptionType::kBool, &format)) format = format ? kOutputText : kOutputOff;
  else if (same_word(text, word, "off")) format = kOutputOff;
  else return false;
  if (*colon == ':') {
    size_t n = length(colon + 1);
    if (format == kOutputOff || n == 0 || n >= kOptionPathMax) return false;
    if (path != nullptr) {
      for (size_t i = 0; i <= n; ++i) path[i] = colon[1 + i];
    }
  } else if (path != nullptr) {
    path[0] = '\0';
  }
  *out = format;
  return true;
}

void options_load() {
  if (g_loaded) return;
  for (unsigned i = 0; i < kOptCount; ++i) g_values[i] = kOptions[i].default_value;
  if (const char* conf = os::env_get(kConfEnv)) load_conf(conf);
  // The individual variables win over MPCALLOC_CONF: the more specific setting.
  for (unsigned i = 0; i < kOptCount; ++i) {
    const char* text = os::env_get(kOptions[i].env);
    if (text == nullptr) continue;
    long long v;
    if (parse_option(kOptions[i], text, &v, g_paths[i])) g_values[i] = v;
    else warn("", kOptions[i].env, text, expected_form(kOptions[i]));
  }
  // A misspelt name would otherwise be ignored without a word.
  for (const char* const* e = os::environment(); e != nullptr && *e != nullptr; ++e) {
    const char* v = *e;
    if (v[0] != 'M' || !same_word(v, 9, "mpcalloc_")) continue;
    char name[64];
    size_t n = 0;
    while (v[n] != '\0' && v[n] != '=' && n < sizeof(name) - 1) name[n] = v[n], ++n;
    name[n] = '\0';
    if (option_find(name) == kOptCount && !same_name(name, kConfEnv)) {
      warn("unknown option ", name, nullptr, "ignored (see docs/OPTIONS.md)");
    }
  }
  g_loaded = true;
}

long long option(unsigned id) {
  if (!g_loaded) options_load();
  return id < kOptCount ? __atomic_load_n(&g_values[id], __ATOMIC_RELAXED) : -1;
}

const char* option_path(unsigned id) { return id < kOptCount ? g_paths[id] : ""; }

SetResult option_set(const char* name, const char* value) {
  unsigned id = option_find(name);
  if (id == kOptCount) return SetResult::kUnknown;
  if (!kOptions[id].runtime) return SetResult::kFixed;
  long long v;
  if (!parse_option(kOptions[id], value, &v, nullptr)) return SetResult::kBadValue;
  option_set_value(id, v);
  return SetResult::kOk;
}

bool option_set_value(unsigned id, long long value) {
  if (id >= kOptCount || !kOptions[id].runtime) return false;
  if (!g_loaded) options_load();
  store(id, value);
  return true;
}

void format_option(unsigned id, char* buf, size_t cap) {
  if (cap == 0) return;
  os::Message m;
  const OptionDesc& d = kOptions[id];
  long long v = option(id);
  switch (d.type) {
    case OptionType::kChoice: {
      const char* w = d.choices;
      for (long long i = 0; i < v && *w != '\0'; ++i) {
        while (*w != '\0' && *w != '|') ++w;
        if (*w == '|') ++w;
      }
      for (; *w != '\0' && *w != '|'; ++w) {
        char c[2] = {*w, '\0'};
        m.text(c);
      }
      break;
    }
    case OptionType::kOutput:
      m.text(v == kOutputJson ? "json" : v == kOutputText ? "text" : "0");
      if (v != kOutputOff && g_paths[id][0] != '\0') m.text(":").text(g_paths[id]);
      break;
    case OptionType::kAuto:
      if (v == kAutoValue) m.text("auto");
      else m.dec(static_cast<uint64_t>(v));
      break;
    case OptionType::kLimit:
      if (v == kLimitAuto) m.text("auto");
      else m.dec(static_cast<uint64_t>(v));
      break;
    default:
      m.dec(static_cast<uint64_t>(v));
  }
  size_t n = m.length() < cap - 1 ? m.length() : cap - 1;
  for (size_t i = 0; i < n; ++i) buf[i] = m.data()[i];
  buf[n] = '\0';
}

}  // namespace mpcalloc::base
