// Prints docs/OPTIONS.md from the options table (src/base/options.cpp), so the document can
// never drift from the code: a test compares its output with the committed file.
#include <cstdio>

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
    const char* type = d.type == OptionType::kBool ? "bool" : d.type == OptionType::kSize ? "bytes" : "milliseconds";
    std::printf("| `%s` | %s | %lld | %s |\n", d.env, type, d.default_value, d.help);
  }
  std::printf("\nSizes accept a `K`, `M` or `G` suffix (powers of 1024, optionally followed by `iB` or `B`),\n");
  std::printf("e.g. `MPCALLOC_CACHE_MAX=64M` or `64MiB`; values above 2^60 are rejected.\n");
  std::printf("Booleans accept `1`/`0`, `y`/`n`, `yes`/`no`, `t`/`f`, `true`/`false` (any case, whole word).\n");
  std::printf("An unparsable value keeps the default.\n");
  std::printf("Options can also be read at run time with `mpcalloc_option_get(\"name\")` using the\n");
  std::printf("lower-case name without the prefix (e.g. `\"cache_max\"`).\n");
  return 0;
}
