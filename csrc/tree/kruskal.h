// Kruskal reconstruction tree of a pixel graph: the structure behind exact global propagation.
//
// Nodes 0..n-1 are pixels (leaves); every union of Kruskal's algorithm creates an internal node
// whose height is the merging edge's weight. The largest edge on the MST path between two pixels
// is the height of their lowest common ancestor, which turns the all-pairs tree filter into two
// linear sweeps.
//
// This file holds the tree as built (MergeTree), Kruskal over the sorted edges of one band of
// pixels (a union-find in one int32 array, prefetched from the sorted edge list) and the
// breadth-first layout the channel sweeps read. build.h puts the pieces together.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/keyed_id.h"
#include "common/kway_merge.h"
#include "common/parallel.h"
#include "common/scratch.h"

namespace clipapro {

// Squared guide distance between pixels u and v of a planar guide (f, n).
template <typename T>
inline T squared_distance(const T* g, int64_t f, int64_t n, int64_t u, int64_t v) {
  T s = 0;
  for (int64_t k = 0; k < f; ++k) {
    const T d = g[k * n + u] - g[k * n + v];
    s += d * d;
  }
  return s;
}

// Output buffers of one tree build; tree_edges / tree_weights may be null.
template <typename T>
struct TreeBuffers {
  int32_t* parent;        // (2n-1), root's parent = -1
  T* height;              // (n-1)
  int64_t* tree_edges;    // (n-1, 2) or null
  T* tree_weights;        // (n-1) or null
};

// Merges in slots: slot k joins nodes child[2k] (the component of the edge's first pixel) and
// child[2k+1] (the second's); merges[k] is its edge (weight and id).
template <typename T>
struct MergeSlots {
  Scratch<int32_t> child;
  Scratch<KeyedId<T>> merges;
  int64_t size() const { return static_cast<int64_t>(merges.size()); }
  void resize(int64_t slots) {
    child.resize(static_cast<size_t>(2 * slots));
    merges.resize(static_cast<size_t>(slots));
  }
};

// A reconstruction tree of n pixels as built. Band slot k is node n+k, glue slot g is node
// n + bands.size() + g. The band slots form runs, [0, run_end[0]), [run_end[0], run_end[1]), ...,
// of merges independent of each other's (children before parents within each run); the glue slots
// come after all of them, children before parents, the root last. A band slot marked dead holds no
// merge (its children are harmless to read): a sweep may give runs to different threads and skip
// dead slots. A tree built in one piece is one run with no glue and no dead slot.
template <typename T>
struct MergeTree {
  int64_t n = 0;
  MergeSlots<T> bands;
  Scratch<uint8_t> dead;  // per band slot; empty when none is
  std::vector<int64_t> run_end;
  MergeSlots<T> glue;
  bool is_dead(int64_t k) const { return !dead.vec().empty() && dead[k]; }
  int64_t run_begin(size_t r) const { return r == 0 ? 0 : run_end[r - 1]; }
  int64_t root() const { return n + bands.size() + glue.size() - 1; }
  // Children of internal node `node`.
  const int32_t* children(int64_t node) const {
    const int64_t k = node - n;
    return k < bands.size() ? bands.child.data() + 2 * k : glue.child.data() + 2 * (k - bands.size());
  }
  const KeyedId<T>& merge(int64_t node) const {
    const int64_t k = node - n;
    return k < bands.size() ? bands.merges[k] : glue.merges[k - bands.size()];
  }
};

// Union-find over the pixels [p0, p0 + count) in ONE int32 array (it fits in the L2 cache at
// 512x512): uf[x] >= 0 is x's parent; a root stores -(node + 1), the reconstruction node that
// currently stands for its component. Roots are linked by index (the larger index becomes the
// root), which needs no size array; path halving keeps the finds short (under one step on average
// on photos and noise alike).
class UnionFind {
 public:
  UnionFind(int64_t p0, int64_t count) : p0_(p0), uf_(count) {
    for (int64_t i = 0; i < count; ++i) uf_[i] = -static_cast<int32_t>(p0 + i) - 1;
  }
  // Root of pixel x (a global pixel id), as a local index.
  int32_t find(int64_t x) {
    int32_t i = static_cast<int32_t>(x - p0_);
    while (uf_[i] >= 0) {
      const int32_t p = uf_[i];
      if (uf_[p] >= 0) uf_[i] = uf_[p];  // path halving
      i = p;
    }
    return i;
  }
  int32_t node(int32_t root) const { return -uf_[root] - 1; }
  void prefetch(int64_t x) const { __builtin_prefetch(&uf_[x - p0_]); }
  // Links two distinct roots; the merged component is represented by reconstruction node `node`.
  void link(int32_t a, int32_t b, int32_t node) {
    if (a < b) std::swap(a, b);
    uf_[b] = a;
    uf_[a] = -node - 1;
  }

 private:
  int64_t p0_;
  Scratch<int32_t> uf_;
};

// Kruskal over items sorted by (weight, id) whose endpoints lie in the pixels [p0, p1);
// endpoints(id, &u, &v) names each edge. Merge m goes to child[2m..2m+1] and merges[m] as node
// first_node + m (room for p1 - p0 - 1 merges). Returns the number of merges. With
// `require_tree`, every item must join two components (the items are a given spanning tree):
// otherwise std::invalid_argument naming the argument "tree".
template <typename T, typename Endpoints>
int64_t band_kruskal(const KeyedId<T>* items, int64_t count, Endpoints endpoints, bool require_tree, int64_t p0,
                     int64_t p1, int64_t first_node, int32_t* child, KeyedId<T>* merges) {
  const int64_t most = std::max<int64_t>(0, p1 - p0 - 1);
  UnionFind uf(p0, p1 - p0);
  constexpr int64_t kAhead = 16;  // the edge list is known ahead: prefetch where its finds start
  int64_t m = 0;
  for (int64_t k = 0; k < count && m < most; ++k) {
    if (k + kAhead < count) {
      int64_t pu, pv;
      endpoints(items[k + kAhead].id(), &pu, &pv);
      uf.prefetch(pu);
      uf.prefetch(pv);
    }
    int64_t u, v;
    endpoints(items[k].id(), &u, &v);
    const int32_t ru = uf.find(u);
    const int32_t rv = uf.find(v);
    if (ru == rv) {
      if (require_tree) throw std::invalid_argument("tree is not a spanning tree of the grid: it contains a cycle");
      continue;
    }
    child[2 * m] = uf.node(ru);
    child[2 * m + 1] = uf.node(rv);
    uf.link(ru, rv, static_cast<int32_t>(first_node + m));
    merges[m] = items[k];
    ++m;
  }
  if (require_tree && m < count) {
    throw std::invalid_argument("tree is not a spanning tree of the grid: it contains a cycle");
  }
  return m;
}

// Writes the edges and weights of the merges in ascending (weight, id) order, when asked. Each run
// of band slots holds its live merges in that order already, and so do the glue slots: sorted
// lists to merge.
template <typename T, typename Endpoints>
void write_tree_edges(const MergeTree<T>& tree, Endpoints endpoints, const TreeBuffers<T>& out) {
  using Item = KeyedId<T>;
  if (!out.tree_edges && !out.tree_weights) return;
  const int runs = static_cast<int>(tree.run_end.size());
  std::vector<int64_t> pos(runs + 1);  // next slot of each run; the glue is source `runs`
  auto next = [&](int r) -> const Item* {  // the source's next merge, or null
    if (r == runs) return pos[r] < tree.glue.size() ? &tree.glue.merges[pos[r]++] : nullptr;
    while (pos[r] < tree.run_end[r] && tree.is_dead(pos[r])) ++pos[r];
    return pos[r] < tree.run_end[r] ? &tree.bands.merges[pos[r]++] : nullptr;
  };
  KWayMerge<Item> heads(static_cast<size_t>(runs + 1));
  for (int r = 0; r <= runs; ++r) {
    pos[r] = r < runs ? tree.run_begin(r) : 0;
    if (const Item* e = next(r)) heads.add(*e, r);
  }
  for (int64_t k = 0; !heads.empty(); ++k) {
    const Item e = heads.top();
    if (const Item* nx = next(heads.top_source())) heads.replace_top(*nx);
    else heads.pop();
    if (out.tree_edges) {
      int64_t u, v;
      endpoints(e.id(), &u, &v);
      out.tree_edges[2 * k] = u;
      out.tree_edges[2 * k + 1] = v;
    }
    if (out.tree_weights) out.tree_weights[k] = e.weight();
  }
}

// Writes parent links and heights with internal nodes renumbered breadth-first (the root becomes
// node n), so that parents precede children, siblings sit together and a node's children follow
// its parent's other children closely: the channel sweeps then walk internal nodes almost
// sequentially instead of in the random order of creation. The glue comes first, breadth-first from
// the root; then each run, breadth-first from the run's nodes whose parent is in the glue. A run
// stays within its band's slice of memory, and the runs are numbered on `threads` threads.
template <typename T>
void renumber_breadth_first(const MergeTree<T>& tree, const TreeBuffers<T>& out, int threads) {
  const int64_t n = tree.n, nb = tree.bands.size();
  const int runs = static_cast<int>(tree.run_end.size());
  constexpr int64_t kAhead = 16;  // a queue is known ahead: prefetch what those nodes will read
  // Breadth-first from the nodes queue[0..tail) (numbered first, first + 1, ...): pixels get their
  // parent link, merges accepted by `take` join the queue, the others are handed to `hand_off`.
  auto walk = [&](int32_t* queue, int64_t tail, int64_t first, auto take, auto hand_off) {
    for (int64_t head = 0; head < tail; ++head) {
      if (head + kAhead < tail) {
        __builtin_prefetch(tree.children(queue[head + kAhead]));
        __builtin_prefetch(&tree.merge(queue[head + kAhead]));
      }
      const int32_t node = queue[head];
      const int32_t self = static_cast<int32_t>(n + first + head);
      out.height[first + head] = tree.merge(node).weight();
      const int32_t* ch = tree.children(node);
      for (int k = 0; k < 2; ++k) {
        const int32_t c = ch[k];
        if (c < n) {
          out.parent[c] = self;
        } else if (take(c)) {
          out.parent[n + first + tail] = self;
          queue[tail++] = c;
        } else {
          hand_off(c, self);
        }
      }
    }
    return tail;
  };
  auto run_of = [&](int32_t node) {  // the run holding band slot node - n
    return static_cast<int>(std::upper_bound(tree.run_end.begin(), tree.run_end.end(), node - n) - tree.run_end.begin());
  };
  // Each run's roots, in the order the glue walk meets them, with their parents' numbers.
  std::vector<std::vector<std::pair<int32_t, int32_t>>> roots(static_cast<size_t>(runs));
  const int64_t glue = tree.glue.size();
  out.parent[n] = -1;
  if (glue > 0) {
    Scratch<int32_t> queue(static_cast<size_t>(glue));
    queue[0] = static_cast<int32_t>(tree.root());
    walk(queue.data(), 1, 0, [&](int32_t c) { return c - n >= nb; },
         [&](int32_t c, int32_t parent) { roots[run_of(c)].push_back({c, parent}); });
  } else {
    roots[run_of(static_cast<int32_t>(tree.root()))].push_back({static_cast<int32_t>(tree.root()), -1});
  }
  // Where each run's numbers start: after the glue and the runs before it.
  std::vector<int64_t> first(static_cast<size_t>(runs) + 1, glue);
  parallel_for(runs, threads, [&](int64_t r) {
    int64_t live = 0;
    for (int64_t k = tree.run_begin(r); k < tree.run_end[r]; ++k) live += tree.is_dead(k) ? 0 : 1;
    first[r + 1] = live;
  });
  for (int r = 0; r < runs; ++r) first[r + 1] += first[r];
  parallel_for(runs, threads, [&](int64_t r) {
    Scratch<int32_t> queue(static_cast<size_t>(first[r + 1] - first[r]));
    int64_t tail = 0;
    for (const auto& [node, parent] : roots[r]) {
      out.parent[n + first[r] + tail] = parent;
      queue[tail++] = node;
    }
    walk(queue.data(), tail, first[r], [](int32_t) { return true; }, [](int32_t, int32_t) {});
  });
}

}  // namespace clipapro
