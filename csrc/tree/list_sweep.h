// Exact all-pairs tree filter straight on the merge list of a reconstruction tree, for a few
// channels: no renumbering pass and no parent links.
//
// Every node (pixel or merge) gets one slot of `stride` values: the channels, a count (the
// normaliser's channel of ones) and its affinity a = exp(-height / zeta^2) (1 for pixels), so
// that a child is handled the same way whether it is a pixel or a merge (a branch there would
// mispredict half the time). Bottom-up, in list order (children before parents), a merge's slot is
// the sum of its children's; top-down, in reverse, each merge pushes T(child) = T(self) +
// (a(child) - a(self)) S(child) into its children, so a pixel's slot ends holding
// sum_j a(lca(i, j)) x_j. The tree's independent runs (see MergeTree) go to different threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/affinity.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "tree/kruskal.h"
#include "tree/sweep.h"

namespace clipapro {

// Values per slot for c channels: channels, count, affinity, padded to a multiple of 4.
inline int64_t list_sweep_stride(int64_t c) { return (c + 2 + 3) / 4 * 4; }

// Few channels go straight over the merge list; more go through the breadth-first layout, whose
// sweeps stream through memory (worth its renumbering pass once a slot spans a cache line).
inline bool use_list_sweep(int64_t c) { return c <= 6; }

template <typename T>
void list_sweep(const MergeTree<T>& tree, int64_t c, const T* x, double zeta, const SweepOptions& opt, int threads,
                T* y) {
  using Item = KeyedId<T>;
  const int64_t n = tree.n;  // >= 2: a single pixel is its own result, handled by the caller
  const int64_t stride = list_sweep_stride(c), cnt = c, aff = c + 1;
  const int64_t nb = tree.bands.size(), ng = tree.glue.size();
  const int runs = static_cast<int>(tree.run_end.size());
  // + a spare slot per run, where dead slots push (zeros with affinity 0: stays bounded)
  Scratch<T> slots_buf(static_cast<size_t>((n + nb + ng + runs) * stride));
  T* const slots = slots_buf.data();
  T* const spares = slots + (n + nb + ng) * stride;
  std::fill(spares, spares + runs * stride, T(0));
  const Affinity<T> affinity(zeta);
  const int workers = n >= (int64_t(1) << 16) ? std::max(1, threads) : 1;  // for the pixel passes
  // Pixel slots: channels (planar -> slot), count 1, and the pixel's affinity to itself: 1, or 0
  // to leave it out (then the push yields T(p) - a(p) x_i directly, with no cancellation).
  const T self_affinity = opt.include_self ? T(1) : T(0);
  parallel_for(workers, workers, [&](int64_t part) {
    const int64_t v0 = n * part / workers, v1 = n * (part + 1) / workers;
    for (int64_t v = v0; v < v1; ++v) {
      T* s = slots + v * stride;
      s[cnt] = T(1);
      s[aff] = self_affinity;
    }
    for (int64_t k = 0; k < c; ++k) {
      const T* xk = x + k * n;
      for (int64_t v = v0; v < v1; ++v) slots[v * stride + k] = xk[v];
    }
  });
  constexpr int64_t kAhead = 16;  // the child list is known ahead: prefetch the slots it names
  // Bottom-up over slots [k0, k1) of one slot array whose slot k is node `node0 + k`.
  auto up = [&](const int32_t* child, const Item* merges, int64_t node0, int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      if (k + kAhead < k1) {
        __builtin_prefetch(slots + child[2 * (k + kAhead)] * stride);
        __builtin_prefetch(slots + child[2 * (k + kAhead) + 1] * stride);
      }
      const T* s0 = slots + child[2 * k] * stride;
      const T* s1 = slots + child[2 * k + 1] * stride;
      T* s = slots + (node0 + k) * stride;
      for (int64_t j = 0; j <= cnt; ++j) s[j] = s0[j] + s1[j];
      s[aff] = affinity(merges[k].weight());
    }
  };
  // Top-down over slots [k0, k1) in reverse. A dead slot (dead[k] != 0) pushes into `spare`.
  auto down = [&](const int32_t* child, const uint8_t* dead, int64_t node0, int64_t k0, int64_t k1, T* spare) {
    for (int64_t k = k1 - 1; k >= k0; --k) {
      if (k - kAhead >= k0) {
        __builtin_prefetch(slots + child[2 * (k - kAhead)] * stride, 1);
        __builtin_prefetch(slots + child[2 * (k - kAhead) + 1] * stride, 1);
      }
      const T* s = slots + (node0 + k) * stride;
      const T a = s[aff];
      const bool live = !dead || !dead[k];
      for (int q = 0; q < 2; ++q) {
        T* sc = live ? slots + child[2 * k + q] * stride : spare;
        const T d = sc[aff] - a;
        for (int64_t j = 0; j <= cnt; ++j) sc[j] = s[j] + d * sc[j];
      }
    }
  };
  const int32_t* const bchild = tree.bands.child.data();
  const Item* const bmerges = tree.bands.merges.data();
  const uint8_t* const dead = tree.dead.vec().empty() ? nullptr : tree.dead.data();
  const int32_t* const gchild = tree.glue.child.data();
  const Item* const gmerges = tree.glue.merges.data();
  // Runs are independent of each other: up the runs in parallel, up the glue; down the glue, down
  // the runs in parallel.
  parallel_for(runs, threads, [&](int64_t r) { up(bchild, bmerges, n, tree.run_begin(r), tree.run_end[r]); });
  up(gchild, gmerges, n + nb, 0, ng);
  {
    T* root = slots + tree.root() * stride;
    for (int64_t j = 0; j <= cnt; ++j) root[j] *= root[aff];
  }
  down(gchild, nullptr, n + nb, 0, ng, spares);
  parallel_for(runs, threads, [&](int64_t r) {
    down(bchild, dead, n, tree.run_begin(r), tree.run_end[r], spares + r * stride);
  });
  // Pixel slots now hold T(i) = sum_j a(lca(i, j)) x_j, with a(i, i) the self affinity. Without the
  // self term the normaliser is 0 when every affinity underflowed: the output is then 0.
  parallel_for(workers, workers, [&](int64_t part) {
    const int64_t v0 = n * part / workers, v1 = n * (part + 1) / workers;
    for (int64_t k = 0; k < c; ++k) {
      T* yk = y + k * n;
      for (int64_t v = v0; v < v1; ++v) {
        const T* s = slots + v * stride;
        yk[v] = !opt.normalize ? s[k] : s[cnt] > T(0) ? s[k] / s[cnt] : T(0);
      }
    }
  });
}

}  // namespace clipapro
