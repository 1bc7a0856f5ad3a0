// Exact all-pairs tree filter on a Kruskal reconstruction tree, in two linear sweeps.
//
// With a(u) = exp(-height(u)/zeta^2) for internal nodes and a(leaf) = 1, S(u) the sum of x over the
// leaves below u, and T(root) = a(root) S(root), T(v) = T(parent) + (a(v) - a(parent)) S(v), the
// leaf value T(i) equals sum_j a(lca(i, j)) x_j: the unnormalised global propagation. T overwrites
// S in place (top-down), so the sweeps need one (n-1, C) buffer per channel block.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/parallel.h"

namespace clipapro {

struct SweepOptions {
  bool normalize = true;
  bool include_self = true;
};

// Bottom-up then top-down over channels [c0, c0 + cb) of x (n, c) into y (n, c), using
// scratch s (n-1, cb). `a` has the n-1 internal affinities. z (n) is the normaliser (or null).
template <typename T>
void sweep_block(int64_t n, int64_t c, int64_t c0, int64_t cb, const T* x, const int32_t* parent,
                 const T* a, const T* z, const SweepOptions& opt, T* s, T* y) {
  std::fill(s, s + (n - 1) * cb, T(0));
  for (int64_t v = 0; v < n; ++v) {
    T* dst = s + (parent[v] - n) * cb;
    const T* src = x + v * c + c0;
    for (int64_t k = 0; k < cb; ++k) dst[k] += src[k];
  }
  for (int64_t v = n; v < 2 * n - 2; ++v) {
    T* dst = s + (parent[v] - n) * cb;
    const T* src = s + (v - n) * cb;
    for (int64_t k = 0; k < cb; ++k) dst[k] += src[k];
  }
  {
    T* root = s + (n - 2) * cb;
    const T ar = a[n - 2];
    for (int64_t k = 0; k < cb; ++k) root[k] *= ar;
  }
  for (int64_t v = 2 * n - 3; v >= n; --v) {
    const int64_t p = parent[v] - n;
    const T d = a[v - n] - a[p];
    const T* tp = s + p * cb;
    T* tv = s + (v - n) * cb;
    for (int64_t k = 0; k < cb; ++k) tv[k] = tp[k] + d * tv[k];
  }
  for (int64_t v = 0; v < n; ++v) {
    const int64_t p = parent[v] - n;
    const T d = T(1) - a[p];
    const T* tp = s + p * cb;
    const T* xv = x + v * c + c0;
    T* yv = y + v * c + c0;
    if (opt.include_self) {
      for (int64_t k = 0; k < cb; ++k) yv[k] = tp[k] + d * xv[k];
    } else {
      const T ap = a[p];
      for (int64_t k = 0; k < cb; ++k) yv[k] = tp[k] - ap * xv[k];
    }
    if (z) {
      const T inv = T(1) / z[v];
      for (int64_t k = 0; k < cb; ++k) yv[k] *= inv;
    }
  }
}

// Normaliser z_i = sum_j a(lca(i, j)) (minus 1 without self), clamped away from zero.
template <typename T>
void sweep_normaliser(int64_t n, const int32_t* parent, const T* a, bool include_self, T* z) {
  std::vector<T> s(n - 1, T(0));
  for (int64_t v = 0; v < n; ++v) s[parent[v] - n] += T(1);
  for (int64_t v = n; v < 2 * n - 2; ++v) s[parent[v] - n] += s[v - n];
  s[n - 2] *= a[n - 2];
  for (int64_t v = 2 * n - 3; v >= n; --v) s[v - n] = s[parent[v] - n] + (a[v - n] - a[parent[v] - n]) * s[v - n];
  const T tiny = std::numeric_limits<T>::min();
  for (int64_t v = 0; v < n; ++v) {
    const int64_t p = parent[v] - n;
    T zv = include_self ? s[p] + (T(1) - a[p]) : s[p] - a[p];
    z[v] = std::max(zv, tiny);
  }
}

// Full tree filter of one image: x (n, c) -> y (n, c), channel blocks spread over `threads`.
template <typename T>
void tree_sweep(int64_t n, int64_t c, const T* x, const int32_t* parent, const T* height, double zeta,
                const SweepOptions& opt, int threads, T* y) {
  if (n == 1) {
    for (int64_t k = 0; k < c; ++k) y[k] = opt.include_self ? x[k] : T(0);
    return;
  }
  std::vector<T> a(n - 1);
  const double inv = 1.0 / (zeta * zeta);
  for (int64_t u = 0; u < n - 1; ++u) a[u] = static_cast<T>(std::exp(-static_cast<double>(height[u]) * inv));
  std::vector<T> z;
  if (opt.normalize) {
    z.resize(n);
    sweep_normaliser(n, parent, a.data(), opt.include_self, z.data());
  }
  // Blocks of at most 16 channels keep each node's slice within one or two cache lines.
  const int64_t max_block = 16;
  int64_t blocks = std::max<int64_t>((c + max_block - 1) / max_block, std::min<int64_t>(threads, c));
  blocks = std::min<int64_t>(blocks, c);
  const int64_t base = c / blocks, extra = c % blocks;
  const int workers = static_cast<int>(std::min<int64_t>(threads, blocks));
  std::vector<std::vector<T>> scratch(workers);
  std::vector<int64_t> starts(blocks + 1, 0);
  for (int64_t b = 0; b < blocks; ++b) starts[b + 1] = starts[b] + base + (b < extra ? 1 : 0);
  // Each worker takes blocks round-robin and reuses its own scratch buffer.
  parallel_for(workers, workers, [&](int64_t wkr) {
    std::vector<T>& s = scratch[wkr];
    for (int64_t b = wkr; b < blocks; b += workers) {
      const int64_t cb = starts[b + 1] - starts[b];
      s.resize((n - 1) * cb);
      sweep_block(n, c, starts[b], cb, x, parent, a.data(), opt.normalize ? z.data() : nullptr, opt, s.data(), y);
    }
  });
}

}  // namespace clipapro
