// The options table: every MPCALLOC_* tunable with its type, default and help, read once from
// the environment. Layer base (reads env through os). docs/OPTIONS.md is generated from it
// (`tools/gen-options-doc`), and MPCALLOC_VERBOSE=1 prints the effective values.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::base {

enum class OptionType { kBool, kSize, kMillis };

enum OptionId : unsigned {
  kOptCheck,
  kOptVerbose,
  kOptStats,
  kOptCacheMax,
  kOptDecayMs,
  kOptCount
};

struct OptionDesc {
  const char* name;     // lower-case, as in mpcalloc_option_get
  const char* env;      // environment variable
  OptionType type;
  long long default_value;
  const char* help;
};

const OptionDesc& option_desc(unsigned id);
// Reads the environment (once; later calls are no-ops).
void options_load();
long long option(unsigned id);
// Parses "123", "64K", "256M", "2G" (sizes), "0/1/yes/no/true/false" (bools). false if invalid.
bool parse_option_value(const char* text, OptionType type, long long* out);

}  // namespace mpcalloc::base
