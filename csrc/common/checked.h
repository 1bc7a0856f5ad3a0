// Size arithmetic that cannot wrap, and allocation failures that say what was asked for.
//
// Buffer sizes are products of user-controlled extents (kernel offsets x pixels x channels); a
// wrapped product would allocate a small buffer and index past it. Every such product goes through
// checked_mul, and a request that cannot be met (wraps, exceeds the machine's physical memory, or
// fails to allocate) becomes OutOfMemory with the sizes in its message, surfaced as MemoryError.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace clipapro {

struct OutOfMemory : std::runtime_error {
  explicit OutOfMemory(const std::string& msg) : std::runtime_error(msg) {}
};

// a * b, or false when it does not fit in an int64.
inline bool checked_mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// The product of `factors` (all >= 0), or -1 when it does not fit in an int64.
inline int64_t checked_product(std::initializer_list<int64_t> factors) {
  int64_t p = 1;
  for (int64_t f : factors) {
    if (f < 0 || !checked_mul(p, f, &p)) return -1;
  }
  return p;
}

// Physical memory of the machine in bytes (0 when unknown).
inline int64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  int64_t bytes = 0;
  if (pages <= 0 || page <= 0 || !checked_mul(pages, page, &bytes)) return 0;
  return bytes;
}

inline std::string mib(int64_t bytes) { return std::to_string(bytes / (int64_t(1) << 20)) + " MiB"; }

// Throws OutOfMemory naming `what` unless `bytes` (-1: overflowed) is plausible to allocate.
inline void require_allocatable(int64_t bytes, const std::string& what) {
  if (bytes < 0) throw OutOfMemory(what + ": the buffer size overflows 64 bits");
  const int64_t phys = physical_memory_bytes();
  if (phys > 0 && bytes > phys) {
    throw OutOfMemory(what + " needs " + mib(bytes) + ", more than this machine's " + mib(phys) + " of memory");
  }
}

}  // namespace clipapro
