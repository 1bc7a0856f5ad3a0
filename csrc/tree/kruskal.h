// Kruskal reconstruction tree of a pixel graph: the structure behind exact global propagation.
//
// Nodes 0..n-1 are pixels (leaves); every union creates internal node n+k (k-th merge), whose
// height is the merging edge's weight. The largest edge on the MST path between two pixels is the
// height of their lowest common ancestor, which turns the all-pairs tree filter into two sweeps.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/radix_sort.h"

namespace clipapro {

// Number of 4-connected grid edges; edge e < H*(W-1) is horizontal, the rest are vertical.
inline int64_t grid_edge_count(int64_t h, int64_t w) { return h * (w - 1) + (h - 1) * w; }

inline void grid_edge(int64_t e, int64_t h, int64_t w, int64_t* u, int64_t* v) {
  (void)h;
  const int64_t nh = h * (w - 1);
  if (e < nh) {
    const int64_t r = e / (w - 1), c = e % (w - 1);
    *u = r * w + c;
    *v = *u + 1;
  } else {
    *u = e - nh;
    *v = *u + w;
  }
}

template <typename T>
inline T squared_distance(const T* g, int64_t f, int64_t u, int64_t v) {
  const T* a = g + u * f;
  const T* b = g + v * f;
  T s = 0;
  for (int64_t k = 0; k < f; ++k) {
    const T d = a[k] - b[k];
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

// Union-find with path halving and union by size; kept apart from the reconstruction tree.
class UnionFind {
 public:
  explicit UnionFind(int64_t n) : parent_(n), size_(n, 1) {
    for (int64_t i = 0; i < n; ++i) parent_[i] = static_cast<int32_t>(i);
  }
  int32_t find(int32_t a) {
    while (parent_[a] != a) {
      parent_[a] = parent_[parent_[a]];
      a = parent_[a];
    }
    return a;
  }
  // Links two distinct roots; returns the new root.
  int32_t link(int32_t a, int32_t b) {
    if (size_[a] < size_[b]) std::swap(a, b);
    parent_[b] = a;
    size_[a] += size_[b];
    return a;
  }

 private:
  std::vector<int32_t> parent_;
  std::vector<int32_t> size_;
};

// Kruskal over candidate edges (endpoints(e, &u, &v), weights w[e]); w is consumed (sorted keys).
// With `require_tree`, the candidates must form a spanning tree: a cycle or a missing edge throws
// std::invalid_argument naming the argument "tree".
template <typename T, typename Endpoints>
void kruskal_build(int64_t n, std::vector<T>& w, Endpoints endpoints, bool require_tree,
                   const TreeBuffers<T>& out) {
  const int64_t e_count = static_cast<int64_t>(w.size());
  std::vector<uint32_t> order(e_count);
  for (int64_t e = 0; e < e_count; ++e) order[e] = static_cast<uint32_t>(e);
  radix_sort_by_key(w, order);
  UnionFind uf(n);
  std::vector<int32_t> node_of(n);
  for (int64_t i = 0; i < n; ++i) node_of[i] = static_cast<int32_t>(i);
  out.parent[2 * n - 2] = -1;
  int64_t next = n;
  for (int64_t k = 0; k < e_count && next < 2 * n - 1; ++k) {
    const uint32_t e = order[k];
    int64_t u, v;
    endpoints(e, &u, &v);
    const int32_t ru = uf.find(static_cast<int32_t>(u));
    const int32_t rv = uf.find(static_cast<int32_t>(v));
    if (ru == rv) {
      if (require_tree) throw std::invalid_argument("tree is not a spanning tree of the grid: it contains a cycle");
      continue;
    }
    const int32_t node = static_cast<int32_t>(next);
    out.parent[node_of[ru]] = node;
    out.parent[node_of[rv]] = node;
    const int32_t root = uf.link(ru, rv);
    node_of[root] = node;
    const int64_t m = next - n;
    out.height[m] = w[e];
    if (out.tree_edges) {
      out.tree_edges[2 * m] = u;
      out.tree_edges[2 * m + 1] = v;
    }
    if (out.tree_weights) out.tree_weights[m] = w[e];
    ++next;
  }
  if (next != 2 * n - 1) {
    throw std::invalid_argument("tree is not a spanning tree of the grid: it does not connect all pixels");
  }
}

// Tree build on the full 4-connected grid, weights = squared guide distance (guide is (n, f)).
template <typename T>
void build_grid_tree(const T* guide, int64_t h, int64_t w, int64_t f, const TreeBuffers<T>& out) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  const int64_t e_count = grid_edge_count(h, w);
  std::vector<T> wt(e_count);
  for (int64_t e = 0; e < e_count; ++e) {
    int64_t u, v;
    grid_edge(e, h, w, &u, &v);
    wt[e] = squared_distance(guide, f, u, v);
  }
  kruskal_build(n, wt, [h, w](int64_t e, int64_t* u, int64_t* v) { grid_edge(e, h, w, u, v); }, false, out);
}

// Tree build on a given spanning tree (edges (n-1, 2)), weights re-computed from the guide.
template <typename T>
void build_given_tree(const T* guide, int64_t h, int64_t w, int64_t f, const int64_t* edges,
                      const TreeBuffers<T>& out) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  const int64_t e_count = n - 1;
  std::vector<T> wt(e_count);
  for (int64_t e = 0; e < e_count; ++e) {
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
    wt[e] = squared_distance(guide, f, u, v);
  }
  kruskal_build(n, wt, [edges](int64_t e, int64_t* u, int64_t* v) { *u = edges[2 * e]; *v = edges[2 * e + 1]; },
                true, out);
}

}  // namespace clipapro
