// Compiled by g++ under LD_PRELOAD, then run: exercises the compiler's allocations.
#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>
int main() {
  std::map<std::string, std::vector<int>> m;
  for (int i = 0; i < 20000; ++i) m["k" + std::to_string(i % 997)].push_back(i);
  long s = 0;
  for (auto& [k, v] : m) s += static_cast<long>(k.size()) * static_cast<long>(v.size()) + v.back();
  std::cout << "sum " << s << "\n";
}
