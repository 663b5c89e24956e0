// Raw-write message formatting; never allocates.
#include "os/os_message.h"

#include <csignal>
#include <sys/syscall.h>
#include <unistd.h>

namespace mpcalloc::os {

Message& Message::text(const char* s) {
  while (*s != '\0' && len_ < sizeof(buf_)) buf_[len_++] = *s++;
  return *this;
}

Message& Message::dec(uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0 && len_ < sizeof(buf_)) buf_[len_++] = tmp[--n];
  return *this;
}

Message& Message::hex(uint64_t v) {
  if (v == 0) return text("(nil)");
  char tmp[20];
  int n = 0;
  while (v != 0) {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  }
  text("0x");
  while (n > 0 && len_ < sizeof(buf_)) buf_[len_++] = tmp[--n];
  return *this;
}

Message& Message::size(uint64_t bytes) {
  static const char* const units[] = {" B", " KiB", " MiB", " GiB", " TiB"};
  int u = 0;
  while (u < 4 && bytes >= 10240) {
    bytes >>= 10;
    ++u;
  }
  return dec(bytes).text(units[u]);
}

void Message::write_to(int fd) const { write_all(fd, buf_, len_); }

void write_all(int fd, const char* data, size_t len) {
  while (len > 0) {
    long w = syscall(SYS_write, fd, data, len);
    if (w <= 0) return;
    data += w;
    len -= static_cast<size_t>(w);
  }
}

void fatal(const Message& m) {
  write_all(2, m.data(), m.length());
  write_all(2, "\n", 1);
  // abort() would be fine too, but raise directly so nothing in libc allocates first.
  signal(SIGABRT, SIG_DFL);
  raise(SIGABRT);
  _exit(134);
}

}  // namespace mpcalloc::os
