// Messages to stderr without malloc or stdio: a fixed buffer and raw write(2).
// Layer os: callable from every layer above.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mpcalloc::os {

// A line being built in a fixed stack buffer; text past the capacity is dropped.
class Message {
 public:
  Message& text(const char* s);
  Message& dec(uint64_t v);
  Message& hex(uint64_t v);  // as %p prints it: 0x...
  Message& size(uint64_t bytes);  // human: 12 KiB, 3 MiB
  void write_to(int fd) const;
  const char* data() const { return buf_; }
  size_t length() const { return len_; }

 private:
  char buf_[512];
  size_t len_ = 0;
};

// Writes the whole buffer to fd, retrying on short writes.
void write_all(int fd, const char* data, size_t len);
// Prints "mpcalloc: <what> ..." already built in `m` (newline added) and aborts the process.
[[noreturn]] void fatal(const Message& m);

}  // namespace mpcalloc::os
