// Prints docs/OPTIONS.md from the options table (src/base/options.cpp), so the document can
// never drift from the code: a test compares its output with the committed file.
#include <cstdio>
#include <string>

#include "base/options.h"

int main() {
  using namespace mpcalloc::base;
  std::printf("# mpcalloc options\n\n");
  std::printf("Generated from the options table in `src/base/options.cpp` by `tools/gen_options_doc`;\n");
  std::printf("do not edit by hand. Every option is read once from the environment when the library\n");
  std::printf("is loaded. `MPCALLOC_VERBOSE=1` prints the effective values on stderr.\n\n");
  std::printf("| variable | type | default | meaning |\n|---|---|---|---|\n");
  for (unsigned i = 0; i < kOptCount; ++i) {
    const OptionDesc& d = option_desc(i);
    std::string type = d.type == OptionType::kBool     ? "bool"
                       : d.type == OptionType::kSize   ? "bytes"
                       : d.type == OptionType::kMillis ? "milliseconds"
                       : d.type == OptionType::kOutput ? "output"
                       : d.type == OptionType::kLimit  ? "bytes or `auto`"
                       : d.type == OptionType::kSignal ? "signal"
                       : d.type == OptionType::kAuto   ? "bool or `auto`"
                                                       : "";
    if (d.type == OptionType::kChoice) {  // `a` / `b` / `c` (a bare '|' would end the cell)
      type = "`";
      for (const char* c = d.choices; *c != '\0'; ++c) type += *c == '|' ? std::string("` / `") : std::string(1, *c);
      type += "`";
    }
    char value[kOptionPathMax + 16];
    format_option(i, value, sizeof(value));
    std::printf("| `%s` | %s | %s%s | %s |\n", d.env, type.c_str(), value, d.runtime ? " (run time)" : "",
                d.help);
  }
  std::printf("\nSizes accept a `K`, `M` or `G` suffix (powers of 1024, optionally followed by `iB` or `B`),\n");
  std::printf("e.g. `MPCALLOC_CACHE_MAX=64M` or `64MiB`; values above 2^60 are rejected.\n");
  std::printf("Booleans accept `1`/`0`, `y`/`n`, `yes`/`no`, `t`/`f`, `true`/`false` (any case, whole word).\n");
  std::printf("An unparsable value keeps the default and prints one warning line on stderr; so does\n");
  std::printf("an `MPCALLOC_*` variable that names no option (a misspelling).\n\n");
  std::printf("`MPCALLOC_CONF` sets several at once with the lower-case names, e.g.\n");
  std::printf("`MPCALLOC_CONF=\"cache_max=64M,decay_ms=200\"`; an individual variable wins over it.\n");
  std::printf("Options are read with `mpcalloc_option_get(\"name\")`; those marked *run time* can be\n");
  std::printf("changed while the program runs with `mpcalloc_option_set(\"cache_max\", \"64M\")`, which\n");
  std::printf("parses as the environment does and keeps the old value (returning -1, errno EINVAL) on a\n");
  std::printf("bad name or value.\n");
  return 0;
}
