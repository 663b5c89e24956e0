// The options table: every MPCALLOC_* tunable with its type, default and help, read once from
// the environment (MPCALLOC_CONF first, then the individual variables), some changeable at run
// time. Layer base (reads env and writes warnings through os). docs/OPTIONS.md is generated
// from it (`tools/gen_options_doc`); MPCALLOC_VERBOSE=1 prints the effective values.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::base {

enum class OptionType {
  kBool,    // 0/1, yes/no, true/false...
  kSize,    // bytes, with K/M/G suffixes
  kMillis,  // milliseconds
  kChoice,  // one word of `choices`; the value is its index
  kOutput,  // off | text | json, optionally ":PATH" (a file, %p = process id); 0 off, 1, 2
  kLimit,   // a size, 0 (none) or "auto" (-1: from the process's cgroup)
  kSignal,  // 0 (none), a signal number, or a name: USR1, SIGUSR2...
  kAuto,    // a bool, or "auto" (kAutoValue)
};

enum OptionId : unsigned {
  kOptCheck,
  kOptVerbose,
  kOptStats,
  kOptCacheMax,
  kOptDecayMs,
  kOptNuma,
  kOptMemLimit,
  kOptPurge,
  kOptThp,
  kOptBackground,
  kOptStatsSignal,
  kOptCount
};

// MPCALLOC_NUMA values.
enum NumaMode : long long { kNumaAuto = 0, kNumaOff, kNumaStrict, kNumaInterleave };
// MPCALLOC_PURGE methods and MPCALLOC_THP modes.
enum PurgeMethod : long long { kPurgeDontneed = 0, kPurgeFree };
enum ThpMode : long long { kThpDefault = 0, kThpNever, kThpMadvise, kThpAlways };
inline constexpr long long kLimitAuto = -1;
inline constexpr long long kAutoValue = 2;  // kAuto options: 0 off, 1 on, 2 auto
// MPCALLOC_STATS formats.
enum OutputFormat : long long { kOutputOff = 0, kOutputText, kOutputJson };

struct OptionDesc {
  const char* name;     // lower-case, as in mpcalloc_option_get/set and MPCALLOC_CONF
  const char* env;      // environment variable
  OptionType type;
  long long default_value;
  const char* choices;  // kChoice: the words, separated by '|'
  bool runtime;         // mpcalloc_option_set may change it after start-up
  const char* help;
};

inline constexpr size_t kOptionPathMax = 256;

const OptionDesc& option_desc(unsigned id);
// The option named `name` (lower-case name or MPCALLOC_ variable), or kOptCount.
unsigned option_find(const char* name);
// Reads MPCALLOC_CONF and the environment (once; later calls are no-ops). Prints one warning
// line on stderr for each unknown MPCALLOC_* name and each unparsable value (which keeps its
// default).
void options_load();
long long option(unsigned id);
// kOutput options: the file given after ':' ("" when none: stderr).
const char* option_path(unsigned id);

enum class SetResult { kOk, kUnknown, kBadValue, kFixed };
// Sets a runtime option from text, with the parsing of the environment. The old value stays
// unless kOk. (Options read only at start-up answer kFixed.)
SetResult option_set(const char* name, const char* value);
// The same for a value already parsed (mallopt): false, and nothing changes, for an option read
// only at start-up.
bool option_set_value(unsigned id, long long value);

// Parses a number or bool: "123", "64K", "256M", "2G" (sizes), "0/1/yes/no/true/false" (bools).
bool parse_option_value(const char* text, OptionType type, long long* out);
// Parses any option's value; `path` (kOptionPathMax bytes, may be null) receives a kOutput path.
bool parse_option(const OptionDesc& d, const char* text, long long* out, char* path);

// Writes the value of option `id` as the environment would spell it into buf (NUL-terminated).
void format_option(unsigned id, char* buf, size_t cap);

}  // namespace mpcalloc::base
