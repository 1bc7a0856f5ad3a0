// Exact all-pairs tree filter on a Kruskal reconstruction tree, in two linear sweeps.
//
// With a(u) = exp(-height(u)/zeta^2) for internal nodes and a(leaf) = 1, S(u) the sum of x over the
// leaves below u, T(root) = a(root) S(root) and T(v) = T(parent) + (a(v) - a(parent)) S(v), the leaf
// value T(i) equals sum_j a(lca(i, j)) x_j: the unnormalised global propagation. T overwrites S in
// place (top-down), so the sweeps need one (n-1, C) buffer per channel block.
//
// Internal nodes are numbered with parents before children (root = node n, see kruskal.h; usually
// breadth-first): the bottom-up sweep runs over them in reverse order, the top-down sweep in order,
// both nearly sequential in memory for the breadth-first numbering. The leaf <-> parent steps are
// random; those are prefetched a few iterations ahead.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/affinity.h"
#include "common/parallel.h"
#include "common/scratch.h"

namespace clipapro {

struct SweepOptions {
  bool normalize = true;
  bool include_self = true;
};

constexpr int64_t kPrefetch = 8;
constexpr int64_t kTile = 64;      // leaves per tile in the leaf passes
constexpr int64_t kMaxBlock = 16;  // channels per block (a node's slice spans one or two cache lines)

// Bottom-up then top-down over channels [c0, c0 + cb) of planar x (c, n) into y (c, n). With
// `normalize`, a channel of ones rides along as channel cb (the normaliser), so one traversal
// yields both sums. `s` is scratch of (n-1) * cs values, cs = cb + normalize. `a` has the n-1
// internal affinities (breadth-first order); `up` (n-1) the parent of each internal node as an
// internal index (up[0] unused).
template <typename T>
void sweep_block(int64_t n, int64_t c0, int64_t cb, const T* x, const int32_t* parent, const int32_t* up,
                 const T* a, const SweepOptions& opt, T* s, T* y) {
  const int64_t cs = cb + (opt.normalize ? 1 : 0);
  std::fill(s, s + (n - 1) * cs, T(0));
  // Leaves are handled in tiles: channel rows are read contiguously into a small transposed tile
  // (planar strides of equal size would otherwise make loads and stores 4K-alias), then each leaf's
  // slice is added into its parent.
  T tile[kTile * (kMaxBlock + 1)];
  for (int64_t v0 = 0; v0 < n; v0 += kTile) {
    const int64_t len = std::min(kTile, n - v0);
    for (int64_t k = 0; k < cb; ++k) {
      const T* src = x + (c0 + k) * n + v0;
      for (int64_t i = 0; i < len; ++i) tile[i * cs + k] = src[i];
    }
    for (int64_t i = 0; i < len; ++i) {
      const int64_t v = v0 + i;
      if (v + kPrefetch < n) __builtin_prefetch(s + (parent[v + kPrefetch] - n) * cs, 1);
      T* dst = s + (parent[v] - n) * cs;
      const T* t = tile + i * cs;
      for (int64_t k = 0; k < cb; ++k) dst[k] += t[k];
      if (opt.normalize) dst[cb] += T(1);
    }
  }
  for (int64_t j = n - 2; j >= 1; --j) {
    T* dst = s + up[j] * cs;
    const T* src = s + j * cs;
    for (int64_t k = 0; k < cs; ++k) dst[k] += src[k];
  }
  for (int64_t k = 0; k < cs; ++k) s[k] *= a[0];
  for (int64_t j = 1; j < n - 1; ++j) {
    const int64_t p = up[j];
    const T d = a[j] - a[p];
    const T* tp = s + p * cs;
    T* tv = s + j * cs;
    for (int64_t k = 0; k < cs; ++k) tv[k] = tp[k] + d * tv[k];
  }
  // The normaliser is >= 1 with the self term; without it, it is 0 when every affinity underflowed
  // (then the output is 0) and may be subnormal, where 1/z overflows: a tile with such a leaf
  // (rare) redoes those leaves by division, so the common path keeps its reciprocal.
  const T tiny = std::numeric_limits<T>::min();
  T dself[kTile], scale[kTile];
  for (int64_t v0 = 0; v0 < n; v0 += kTile) {
    const int64_t len = std::min(kTile, n - v0);
    bool small = false;
    for (int64_t i = 0; i < len; ++i) {  // gather the parents' slices into the tile
      const int64_t v = v0 + i;
      if (v + kPrefetch < n) __builtin_prefetch(s + (parent[v + kPrefetch] - n) * cs, 0);
      const int64_t p = parent[v] - n;
      const T* tp = s + p * cs;
      for (int64_t k = 0; k < cs; ++k) tile[i * cs + k] = tp[k];
      dself[i] = opt.include_self ? T(1) - a[p] : -a[p];  // self term: x_v (weight 1) replaces a(p) x_v
      const T z = opt.normalize ? tp[cb] + dself[i] : T(1);
      scale[i] = T(1) / std::max(z, tiny);
      small |= z < tiny;
    }
    for (int64_t k = 0; k < cb; ++k) {  // then write channel rows contiguously
      const T* xv = x + (c0 + k) * n + v0;
      T* yv = y + (c0 + k) * n + v0;
      for (int64_t i = 0; i < len; ++i) yv[i] = (tile[i * cs + k] + dself[i] * xv[i]) * scale[i];
      if (!small) continue;
      for (int64_t i = 0; i < len; ++i) {
        const T z = tile[i * cs + cb] + dself[i];
        if (z < tiny) yv[i] = z > T(0) ? (tile[i * cs + k] + dself[i] * xv[i]) / z : T(0);
      }
    }
  }
}

// Full tree filter of one image: planar x (c, n) -> y (c, n), channel blocks spread over `threads`.
// `parent` (2n-1) and `height` (n-1) as written by renumber_breadth_first (kruskal.h).
template <typename T>
void tree_sweep(int64_t n, int64_t c, const T* x, const int32_t* parent, const T* height, double zeta,
                const SweepOptions& opt, int threads, T* y) {
  if (n == 1) {
    for (int64_t k = 0; k < c; ++k) y[k] = opt.include_self ? x[k] : T(0);  // n == 1: planar == flat
    return;
  }
  Scratch<T> a(n - 1);
  Scratch<int32_t> up(n - 1, 0);
  const Affinity<T> aff(zeta);  // float exp for float data: exact enough, several times faster
  if (aff.fast) {
    for (int64_t j = 0; j < n - 1; ++j) a[j] = std::exp(-height[j] * aff.inv);
  } else {
    for (int64_t j = 0; j < n - 1; ++j) a[j] = aff(height[j]);
  }
  for (int64_t j = 1; j < n - 1; ++j) up[j] = parent[n + j] - static_cast<int32_t>(n);
  // Blocks of at most kMaxBlock channels; each carries its own normaliser channel (cheaper than a
  // separate traversal).
  int64_t blocks = std::max<int64_t>((c + kMaxBlock - 1) / kMaxBlock, std::min<int64_t>(threads, c));
  blocks = std::min<int64_t>(blocks, c);
  const int64_t base = c / blocks, extra = c % blocks;
  const int workers = static_cast<int>(std::min<int64_t>(threads, blocks));
  std::vector<Scratch<T>> scratch(workers);
  std::vector<int64_t> starts(blocks + 1, 0);
  for (int64_t b = 0; b < blocks; ++b) starts[b + 1] = starts[b] + base + (b < extra ? 1 : 0);
  parallel_for(workers, workers, [&](int64_t wkr) {
    for (int64_t b = wkr; b < blocks; b += workers) {
      const int64_t cb = starts[b + 1] - starts[b];
      scratch[wkr].resize(static_cast<size_t>((n - 1) * (cb + 1)));
      sweep_block(n, starts[b], cb, x, parent, up.data(), a.data(), opt, scratch[wkr].data(), y);
    }
  });
}

}  // namespace clipapro
