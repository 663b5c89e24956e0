// Ages of time stamps. Layer base: pure, no policy.
#pragma once
#include <cstdint>
#include <limits>

namespace mpcalloc::base {

// Whether a stamp taken at `then` is at least `age` old at `now`. A stamp may come from a clock
// read after `now` was (by another thread, or a coarse tick later): it is young, not an age
// that wrapped round. T is the stamp's unsigned type; a 32-bit stamp of a 64-bit clock wraps
// too, so differences past half its range count as "after now".
template <class T>
constexpr bool aged(T then, T now, uint64_t age) {
  static_assert(std::numeric_limits<T>::is_integer && !std::numeric_limits<T>::is_signed);
  T d = static_cast<T>(now - then);
  return d <= std::numeric_limits<T>::max() / 2 && d >= age;
}

}  // namespace mpcalloc::base
