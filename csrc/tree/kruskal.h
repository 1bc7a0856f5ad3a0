// Kruskal reconstruction tree of a pixel graph: the structure behind exact global propagation.
//
// Nodes 0..n-1 are pixels (leaves); the k-th union creates internal node n+k, whose height is the
// merging edge's weight. The largest edge on the MST path between two pixels is the height of
// their lowest common ancestor, which turns the all-pairs tree filter into two linear sweeps.
//
// Speed notes: grid edges are named 2*u (to the right) and 2*u+1 (downwards), so endpoints need no
// division; one radix sort of packed (weight, id) items; the union-find is one int32 array whose
// roots name their reconstruction node, kept apart from the reconstruction tree itself, whose
// children are written in creation order (sequential) and turned into breadth-first parent links
// in one pass afterwards.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/radix_sort.h"
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

// Union-find over pixels in ONE int32 array (it then fits in the L2 cache at 512x512):
// uf[x] >= 0 is x's parent; a root stores -(reconstruction node + 1), the node that currently
// represents its component. Roots are linked by index (the larger index becomes the root), which
// needs no size array; path halving keeps the finds short.
class UnionFind {
 public:
  explicit UnionFind(int64_t n) : uf_(n) {
    for (int64_t i = 0; i < n; ++i) uf_[i] = -static_cast<int32_t>(i) - 1;
  }
  int32_t find(int32_t x) {
    while (uf_[x] >= 0) {
      const int32_t p = uf_[x];
      if (uf_[p] >= 0) uf_[x] = uf_[p];  // path halving
      x = p;
    }
    return x;
  }
  int32_t node(int32_t root) const { return -uf_[root] - 1; }
  // Links two distinct roots; the merged component is represented by reconstruction node `node`.
  void link(int32_t a, int32_t b, int32_t node) {
    if (a < b) std::swap(a, b);
    uf_[b] = a;
    uf_[a] = -node - 1;
  }

 private:
  Scratch<int32_t> uf_;
};

// Writes parent links and heights with internal nodes renumbered breadth-first from the root (the
// root becomes node n). Parents then precede children, siblings sit together and a node's children
// follow its parent's other children closely, so the channel sweeps walk internal nodes almost
// sequentially instead of in the random order of creation. `child` holds the two children of each
// merge in creation order; out.height holds heights in creation order on entry.
template <typename T>
void renumber_breadth_first(int64_t n, const int32_t* child, const TreeBuffers<T>& out) {
  const int64_t m = n - 1;
  Scratch<int32_t> queue(m);  // creation indices in breadth-first order
  Scratch<T> created;
  created.vec().assign(out.height, out.height + m);
  int64_t head = 0, tail = 0;
  queue[tail++] = static_cast<int32_t>(m - 1);
  out.parent[n] = -1;
  constexpr int64_t kAhead = 16;  // the queue is known ahead: prefetch what those nodes will read
  while (head < tail) {
    if (head + kAhead < tail) {
      const int32_t ahead = queue[head + kAhead];
      __builtin_prefetch(&child[2 * ahead]);
      __builtin_prefetch(&created[ahead]);
    }
    const int32_t o = queue[head];
    const int32_t self = static_cast<int32_t>(n + head);
    out.height[head] = created[o];
    ++head;
    for (int k = 0; k < 2; ++k) {
      const int32_t c = child[2 * o + k];
      if (c < n) {
        out.parent[c] = self;
      } else {
        out.parent[n + tail] = self;
        queue[tail++] = static_cast<int32_t>(c - n);
      }
    }
  }
}

// Writes parent links and heights with internal nodes in reverse creation order (the root becomes
// node n): one cheap linear pass, parents still precede children, but without the breadth-first
// locality. Used when only a channel or two will be swept, where the renumbering would not pay.
template <typename T>
void renumber_reverse(int64_t n, const int32_t* child, const TreeBuffers<T>& out) {
  const int64_t m = n - 1;
  Scratch<T> created;
  created.vec().assign(out.height, out.height + m);
  out.parent[n] = -1;
  for (int64_t o = 0; o < m; ++o) {
    const int32_t self = static_cast<int32_t>(n + (m - 1 - o));
    out.height[m - 1 - o] = created[o];
    for (int k = 0; k < 2; ++k) {
      const int32_t c = child[2 * o + k];
      out.parent[c < n ? c : n + (m - 1 - (c - n))] = self;
    }
  }
}

// Kruskal over sorted items; endpoints(id, &u, &v) names each edge. With `require_tree`, every
// item must merge two components (the candidates are a spanning tree): otherwise
// std::invalid_argument naming the argument "tree".
template <typename T, typename Endpoints>
void kruskal_build(int64_t n, std::vector<KeyedId<T>>& items, Endpoints endpoints, bool require_tree,
                   const TreeBuffers<T>& out, bool breadth_first = true) {
  {
    Scratch<KeyedId<T>> tmp;
    radix_sort(items, tmp.vec());
  }
  UnionFind uf(n);
  Scratch<int32_t> child(2 * (n - 1));
  int64_t m = 0;
  const int64_t count = static_cast<int64_t>(items.size());
  for (int64_t k = 0; k < count && m < n - 1; ++k) {
    int64_t u, v;
    endpoints(items[k].id(), &u, &v);
    const int32_t ru = uf.find(static_cast<int32_t>(u));
    const int32_t rv = uf.find(static_cast<int32_t>(v));
    if (ru == rv) {
      if (require_tree) throw std::invalid_argument("tree is not a spanning tree of the grid: it contains a cycle");
      continue;
    }
    child[2 * m] = uf.node(ru);
    child[2 * m + 1] = uf.node(rv);
    uf.link(ru, rv, static_cast<int32_t>(n + m));
    const T wt = items[k].weight();
    out.height[m] = wt;
    if (out.tree_edges) {
      out.tree_edges[2 * m] = u;
      out.tree_edges[2 * m + 1] = v;
    }
    if (out.tree_weights) out.tree_weights[m] = wt;
    ++m;
  }
  if (m != n - 1) {
    throw std::invalid_argument("tree is not a spanning tree of the grid: it does not connect all pixels");
  }
  if (breadth_first) renumber_breadth_first(n, child.data(), out);
  else renumber_reverse(n, child.data(), out);
}
// Tree build on the full 4-connected grid of a planar guide (f, h, w), weight = squared distance.
// Candidate order (horizontal edges row by row, then vertical ones) fixes the tie-breaking.
template <typename T>
void build_grid_tree(const T* guide, int64_t h, int64_t w, int64_t f, const TreeBuffers<T>& out,
                     bool breadth_first = true) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  Scratch<KeyedId<T>> scratch_items;
  std::vector<KeyedId<T>>& items = scratch_items.vec();
  items.reserve(static_cast<size_t>(h * (w - 1) + (h - 1) * w));
  std::vector<T> acc(w);
  for (int64_t r = 0; r < h; ++r) {  // horizontal: channel by channel over a row (vectorises)
    std::fill(acc.begin(), acc.end(), T(0));
    for (int64_t k = 0; k < f; ++k) {
      const T* row = guide + k * n + r * w;
      for (int64_t c = 0; c + 1 < w; ++c) {
        const T d = row[c + 1] - row[c];
        acc[c] += d * d;
      }
    }
    for (int64_t c = 0; c + 1 < w; ++c) items.push_back(KeyedId<T>::make(acc[c], static_cast<uint32_t>(2 * (r * w + c))));
  }
  for (int64_t r = 0; r + 1 < h; ++r) {  // vertical
    std::fill(acc.begin(), acc.end(), T(0));
    for (int64_t k = 0; k < f; ++k) {
      const T* row = guide + k * n + r * w;
      for (int64_t c = 0; c < w; ++c) {
        const T d = row[c + w] - row[c];
        acc[c] += d * d;
      }
    }
    for (int64_t c = 0; c < w; ++c) items.push_back(KeyedId<T>::make(acc[c], static_cast<uint32_t>(2 * (r * w + c) + 1)));
  }
  kruskal_build(n, items, [w](uint32_t id, int64_t* u, int64_t* v) {
    *u = id >> 1;
    *v = *u + ((id & 1u) ? w : 1);
  }, false, out, breadth_first);
}

// Tree build on a given spanning tree (edges (n-1, 2)), weights re-computed from the planar guide.
template <typename T>
void build_given_tree(const T* guide, int64_t h, int64_t w, int64_t f, const int64_t* edges,
                      const TreeBuffers<T>& out, bool breadth_first = true) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  Scratch<KeyedId<T>> scratch_items(n - 1);
  std::vector<KeyedId<T>>& items = scratch_items.vec();
  for (int64_t e = 0; e < n - 1; ++e) {
    const int64_t u = edges[2 * e], v = edges[2 * e + 1];
    if (u < 0 || v < 0 || u >= n || v >= n) {
      throw std::invalid_argument("tree has an edge (" + std::to_string(u) + ", " + std::to_string(v) +
                                  ") with a pixel index outside [0, " + std::to_string(n) + ")");
    }
    const int64_t lo = std::min(u, v), hi = std::max(u, v);
    const bool horizontal = (hi - lo == 1) && (lo / w == hi / w);
    const bool vertical = (hi - lo == w);
    if (!horizontal && !vertical) {
      throw std::invalid_argument("tree has an edge (" + std::to_string(u) + ", " + std::to_string(v) +
                                  ") between pixels that are not 4-neighbours in the grid");
    }
    items[e] = KeyedId<T>::make(squared_distance(guide, f, n, u, v), static_cast<uint32_t>(e));
  }
  kruskal_build(n, items, [edges](uint32_t e, int64_t* u, int64_t* v) {
    *u = edges[2 * e];
    *v = edges[2 * e + 1];
  }, true, out, breadth_first);
}

}  // namespace clipapro
