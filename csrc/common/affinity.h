// Affinities a = exp(-d / zeta^2) of squared distances d >= 0 that never produce NaN.
//
// 1/zeta^2 overflows T for small zetas (float below ~1e-19.5) and underflows for large ones; then
// d * inv is 0 * inf = NaN on ties, or inf * 0 on overflowed distances. When 1/zeta^2 is a normal
// T, d * inv is safe (at worst inf, and exp(-inf) = 0) and stays the fast path: float exp for float
// data. Otherwise the exponent is (d / zeta) / zeta in double: 0 on ties (affinity 1), inf past
// the range (affinity 0), and no intermediate overflows where the ratio itself is moderate.
#pragma once

#include <cmath>

namespace clipapro {

template <typename T>
struct Affinity {
  double zeta;
  T inv;
  bool fast;
  explicit Affinity(double z) : zeta(z), inv(static_cast<T>(1.0 / (z * z))), fast(std::isnormal(inv)) {}
  T operator()(T d) const {
    if (fast) return std::exp(-d * inv);
    return static_cast<T>(std::exp(-(static_cast<double>(d) / zeta) / zeta));
  }
};

}  // namespace clipapro
