// Exact all-pairs tree filter on a Kruskal reconstruction tree, in two linear sweeps.
//
// With a(u) = exp(-height(u)/zeta^2) for internal nodes and a(leaf) = 1, S(u) the sum of x over the
// leaves below u, T(root) = a(root) S(root) and T(v) = T(parent) + (a(v) - a(parent)) S(v), the leaf
// value T(i) equals sum_j a(lca(i, j)) x_j: the unnormalised global propagation. T overwrites S in
// place (top-down), so the sweeps need one (n-1, C) buffer per channel block.
//
// Internal nodes are numbered breadth-first (root = node n, see kruskal.h): the bottom-up sweep runs
// over them in reverse order, the top-down sweep in order, both nearly sequential in memory. Only
// the leaf <-> parent steps are random; those are prefetched a few iterations ahead.
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

constexpr int64_t kPrefetch = 8;

// Bottom-up then top-down over channels [c0, c0 + cb) of planar x (c, n) into y (c, n), using scratch
// s (n-1, cb). `a` has the n-1 internal affinities (breadth-first order); `up` (n-1) the parent of
// each internal node as an internal index (up[0] unused); z (n) the normaliser or null.
template <typename T>
void sweep_block(int64_t n, int64_t c, int64_t c0, int64_t cb, const T* x, const int32_t* parent,
                 const int32_t* up, const T* a, const T* z, const SweepOptions& opt, T* s, T* y) {
  std::fill(s, s + (n - 1) * cb, T(0));
  for (int64_t v = 0; v < n; ++v) {
    if (v + kPrefetch < n) __builtin_prefetch(s + (parent[v + kPrefetch] - n) * cb, 1);
    T* dst = s + (parent[v] - n) * cb;
    const T* src = x + c0 * n + v;
    for (int64_t k = 0; k < cb; ++k) dst[k] += src[k * n];
  }
  for (int64_t j = n - 2; j >= 1; --j) {
    T* dst = s + up[j] * cb;
    const T* src = s + j * cb;
    for (int64_t k = 0; k < cb; ++k) dst[k] += src[k];
  }
  for (int64_t k = 0; k < cb; ++k) s[k] *= a[0];
  for (int64_t j = 1; j < n - 1; ++j) {
    const int64_t p = up[j];
    const T d = a[j] - a[p];
    const T* tp = s + p * cb;
    T* tv = s + j * cb;
    for (int64_t k = 0; k < cb; ++k) tv[k] = tp[k] + d * tv[k];
  }
  for (int64_t v = 0; v < n; ++v) {
    if (v + kPrefetch < n) __builtin_prefetch(s + (parent[v + kPrefetch] - n) * cb, 0);
    const int64_t p = parent[v] - n;
    const T* tp = s + p * cb;
    const T* xv = x + c0 * n + v;
    T* yv = y + c0 * n + v;
    const T d = opt.include_self ? T(1) - a[p] : -a[p];
    const T inv = z ? T(1) / z[v] : T(1);
    for (int64_t k = 0; k < cb; ++k) yv[k * n] = (tp[k] + d * xv[k * n]) * inv;
  }
}

// Normaliser z_i = sum_j a(lca(i, j)) (minus 1 without self), clamped away from zero.
template <typename T>
void sweep_normaliser(int64_t n, const int32_t* parent, const int32_t* up, const T* a, bool include_self, T* z) {
  std::vector<T> s(n - 1, T(0));
  for (int64_t v = 0; v < n; ++v) s[parent[v] - n] += T(1);
  for (int64_t j = n - 2; j >= 1; --j) s[up[j]] += s[j];
  s[0] *= a[0];
  for (int64_t j = 1; j < n - 1; ++j) s[j] = s[up[j]] + (a[j] - a[up[j]]) * s[j];
  const T tiny = std::numeric_limits<T>::min();
  for (int64_t v = 0; v < n; ++v) {
    const int64_t p = parent[v] - n;
    z[v] = std::max(include_self ? s[p] + (T(1) - a[p]) : s[p] - a[p], tiny);
  }
}

// Full tree filter of one image: planar x (c, n) -> y (c, n), channel blocks spread over `threads`.
// `parent` (2n-1) and `height` (n-1) as written by kruskal_build (breadth-first internal nodes).
template <typename T>
void tree_sweep(int64_t n, int64_t c, const T* x, const int32_t* parent, const T* height, double zeta,
                const SweepOptions& opt, int threads, T* y) {
  if (n == 1) {
    for (int64_t k = 0; k < c; ++k) y[k] = opt.include_self ? x[k] : T(0);  // n == 1: planar == flat
    return;
  }
  std::vector<T> a(n - 1);
  std::vector<int32_t> up(n - 1, 0);
  const double inv = 1.0 / (zeta * zeta);
  for (int64_t j = 0; j < n - 1; ++j) {
    a[j] = static_cast<T>(std::exp(-static_cast<double>(height[j]) * inv));
    if (j > 0) up[j] = parent[n + j] - static_cast<int32_t>(n);
  }
  std::vector<T> z;
  if (opt.normalize) {
    z.resize(n);
    sweep_normaliser(n, parent, up.data(), a.data(), opt.include_self, z.data());
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
  parallel_for(workers, workers, [&](int64_t wkr) {
    std::vector<T>& s = scratch[wkr];
    for (int64_t b = wkr; b < blocks; b += workers) {
      const int64_t cb = starts[b + 1] - starts[b];
      s.resize((n - 1) * cb);
      sweep_block(n, c, starts[b], cb, x, parent, up.data(), a.data(), opt.normalize ? z.data() : nullptr, opt,
                  s.data(), y);
    }
  });
}

}  // namespace clipapro
