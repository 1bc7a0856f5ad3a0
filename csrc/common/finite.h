// Finite check of a float buffer, written so that it vectorises: a value is NaN or Inf exactly when
// its exponent bits are all ones.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/parallel.h"

namespace clipapro {

namespace detail {

template <typename T>
struct FloatBits;
template <>
struct FloatBits<float> {
  using U = uint32_t;
  static constexpr U kExp = 0x7f800000u;
};
template <>
struct FloatBits<double> {
  using U = uint64_t;
  static constexpr U kExp = 0x7ff0000000000000ull;
};

template <typename T>
bool range_finite(const T* p, int64_t n) {
  using U = typename FloatBits<T>::U;
  constexpr U kExp = FloatBits<T>::kExp;
  constexpr int64_t kBlock = 4096;  // check often enough to stop early, rarely enough to vectorise
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    U bad = 0;
    for (int64_t i = b; i < e; ++i) {
      U u;
      std::memcpy(&u, p + i, sizeof u);
      bad |= static_cast<U>((u & kExp) == kExp);
    }
    if (bad) return false;
  }
  return true;
}

// Largest |x| as bits (sign cleared): integer max of the magnitudes orders them like the floats,
// and anything at or above the exponent mask is Inf or NaN.
template <typename T>
typename FloatBits<T>::U range_abs_max_bits(const T* p, int64_t n) {
  using U = typename FloatBits<T>::U;
  constexpr U kMag = ~(U(1) << (sizeof(U) * 8 - 1));
  U best = 0;
  for (int64_t i = 0; i < n; ++i) {
    U u;
    std::memcpy(&u, p + i, sizeof u);
    u &= kMag;
    best = u > best ? u : best;
  }
  return best;
}

}  // namespace detail

// True when no element of p[0, n) is NaN or Inf; large buffers are split over `threads`.
template <typename T>
bool all_finite(const T* p, int64_t n, int threads) {
  constexpr int64_t kPerThread = int64_t(1) << 20;  // a part must repay starting a thread
  constexpr int kMaxParts = 64;
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({n / kPerThread, threads, kMaxParts})));
  if (parts == 1) return detail::range_finite(p, n);
  bool ok[kMaxParts];
  parallel_for(parts, parts, [&](int64_t k) {
    const int64_t b = n * k / parts, e = n * (k + 1) / parts;
    ok[k] = detail::range_finite(p + b, e - b);
  });
  return std::all_of(ok, ok + parts, [](bool v) { return v; });
}

// Largest |x| of p[0, n) (0 for n == 0); Inf or NaN when an element is. One vectorised pass, split
// over `threads` like all_finite: the propagation ops use it as their finite check and to see
// whether values or guide need rescaling.
template <typename T>
T abs_max(const T* p, int64_t n, int threads) {
  using U = typename detail::FloatBits<T>::U;
  constexpr int64_t kPerThread = int64_t(1) << 20;
  constexpr int kMaxParts = 64;
  const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({n / kPerThread, threads, kMaxParts})));
  U best = 0;
  if (parts == 1) {
    best = detail::range_abs_max_bits(p, n);
  } else {
    U part_max[kMaxParts];
    parallel_for(parts, parts, [&](int64_t k) {
      const int64_t b = n * k / parts, e = n * (k + 1) / parts;
      part_max[k] = detail::range_abs_max_bits(p + b, e - b);
    });
    best = *std::max_element(part_max, part_max + parts);
  }
  T out;
  std::memcpy(&out, &best, sizeof out);
  return out;
}

}  // namespace clipapro
