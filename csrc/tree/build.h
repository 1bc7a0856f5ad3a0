// Tree builds: the Kruskal reconstruction tree of the 4-connected grid (or of a given spanning tree)
// weighted by squared guide distances.
//
// With two or more threads the image is cut into a top and a bottom band of rows. Each thread
// gathers its band's candidate edges, sorts them and runs Kruskal on them, independently of the
// other; then one pass joins the two band trees along the seam (seam_merge.h). The result is the
// same tree, merge for merge, as one Kruskal over the whole grid in (weight, id) order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/bucket_sort.h"
#include "common/parallel.h"
#include "common/keyed_id.h"
#include "common/scratch.h"
#include "tree/grid_candidates.h"
#include "tree/kruskal.h"
#include "tree/seam_merge.h"

namespace clipapro {

// Endpoints of grid edge ids: 2u is u -> u+1, 2u+1 is u -> u+w.
struct GridEndpoints {
  int64_t w;
  void operator()(uint32_t id, int64_t* u, int64_t* v) const {
    *u = id >> 1;
    *v = *u + ((id & 1u) ? w : 1);
  }
};

// Endpoints of a given edge list (n-1, 2): id e is the edge edges[e].
struct ListEndpoints {
  const int64_t* edges;
  void operator()(uint32_t e, int64_t* u, int64_t* v) const {
    *u = edges[2 * e];
    *v = edges[2 * e + 1];
  }
};

// Two bands when there are threads for them and enough pixels to repay starting a thread.
inline bool two_bands(int64_t h, int64_t n, int threads) { return threads >= 2 && h >= 4 && n >= (int64_t(1) << 14); }

// Builds a tree in one piece: sorts the items (in id order) and runs Kruskal on them.
template <typename T, typename Endpoints>
void one_piece_tree(int64_t n, Buffer<KeyedId<T>>& items, Endpoints ends, bool require_tree, MergeTree<T>& tree) {
  Scratch<KeyedId<T>> tmp;
  bucket_sort(items, tmp);
  tree.n = n;
  tree.bands.resize(n - 1);
  const int64_t m = band_kruskal(items.data(), static_cast<int64_t>(items.size()), ends, require_tree, 0, n, n,
                                 tree.bands.child.data(), tree.bands.merges.data());
  if (m != n - 1) {
    throw std::invalid_argument("tree is not a spanning tree of the grid: it does not connect all pixels");
  }
  tree.runs[0] = tree.runs[1] = n - 1;
}

// Builds a tree in two bands: `band_work(b, items, seam)` fills band b's candidate items in id order
// (band 0 also the seam edges) on band b's thread, which then sorts them, runs Kruskal and marks
// the tagged merges; one pass then replays those and the seam edges (seam_merge.h).
template <typename T, typename Endpoints, typename BandWork>
void two_band_tree(int64_t h, int64_t w, Endpoints ends, bool require_tree, BandWork band_work, MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int64_t n = h * w, s0 = (h / 2) * w;
  const SeamLayout lay{n, s0, s0 - w, s0 + w, {0, s0 - 1}};
  tree.n = n;
  tree.bands.resize(n - 2);  // room for s0 - 1 merges in band A and n - s0 - 1 in band B
  tree.dead.assign(static_cast<size_t>(n - 2), 0);
  tree.runs[0] = s0 - 1;
  tree.runs[1] = n - 2;
  Scratch<int32_t> tagged[2];
  Scratch<Item> seam;
  parallel_for(2, 2, [&](int64_t b) {
    Scratch<Item> items, tmp;
    band_work(static_cast<int>(b), items, seam);
    bucket_sort(items.vec(), tmp);
    const int64_t first = lay.first_slot[b];
    const int64_t m = band_kruskal(items.data(), static_cast<int64_t>(items.size()), ends, require_tree, b ? s0 : 0,
                                   b ? n : s0, n + first, tree.bands.child.data() + 2 * first,
                                   tree.bands.merges.data() + first);
    split_band(lay, static_cast<int>(b), m, tree, tagged[b]);
  });
  Scratch<Item> tmp;
  bucket_sort(seam.vec(), tmp);
  join_bands(lay, tagged, seam.vec(), ends, require_tree, tree);
}

// Reconstruction tree of the grid (see MergeTree for how its merges are laid out).
template <typename T>
void grid_merge_tree(const T* guide, int64_t h, int64_t w, int64_t f, int threads, MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int64_t n = h * w;
  const GridEndpoints ends{w};
  if (!two_bands(h, n, threads)) {
    Scratch<Item> items;
    items.reserve(static_cast<size_t>(2 * n));
    grid_candidates(guide, h, w, f, 0, h, items.vec());
    one_piece_tree(n, items.vec(), ends, false, tree);
    return;
  }
  const int64_t h1 = h / 2;
  two_band_tree<T>(h, w, ends, false, [&](int b, Scratch<Item>& items, Scratch<Item>& seam) {
    items.reserve(static_cast<size_t>(2 * (b ? h - h1 : h1) * w));
    Buffer<Item>& it = items.vec();
    grid_candidates(guide, h, w, f, b ? h1 : 0, b ? h : h1, it);
    if (b == 0) {  // the down edges of the band's last row cross the seam: set them aside
      const uint32_t first = static_cast<uint32_t>(2 * (h1 - 1) * w);
      auto tail = std::find_if(it.begin(), it.end(), [first](const Item& e) { return e.id() >= first; });
      auto keep = std::stable_partition(tail, it.end(), [](const Item& e) { return (e.id() & 1u) == 0; });
      seam.reserve(static_cast<size_t>(w));
      seam.vec().assign(keep, it.end());
      it.erase(keep, it.end());
    }
  }, tree);
}

// Checks a given tree edge (u, v) of an (h, w) grid; returns an error message or "".
inline std::string given_edge_error(int64_t u, int64_t v, int64_t w, int64_t n) {
  if (u < 0 || v < 0 || u >= n || v >= n) {
    return "tree has an edge (" + std::to_string(u) + ", " + std::to_string(v) + ") with a pixel index outside [0, " +
           std::to_string(n) + ")";
  }
  const int64_t lo = std::min(u, v), hi = std::max(u, v);
  const bool horizontal = (hi - lo == 1) && (lo / w == hi / w);
  if (!horizontal && hi - lo != w) {
    return "tree has an edge (" + std::to_string(u) + ", " + std::to_string(v) +
           ") between pixels that are not 4-neighbours in the grid";
  }
  return std::string();
}

// Reconstruction tree of a given spanning tree (edges (n-1, 2)) in creation order; ties are broken
// by edge index. Raises std::invalid_argument naming "tree" when the edges are not a spanning tree.
template <typename T>
void given_merge_tree(const T* guide, int64_t h, int64_t w, int64_t f, const int64_t* edges, int threads,
                       MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int64_t n = h * w, m = n - 1;
  const ListEndpoints ends{edges};
  const bool split = two_bands(h, n, threads);
  const int parts = split ? 2 : 1;
  const int64_t s0 = (h / 2) * w;
  // Pass 1, over edge ranges: check every edge, weigh it and sort it into band 0, band 1 or seam.
  std::vector<Scratch<Item>> lists(static_cast<size_t>(parts) * 3);
  std::vector<std::string> errors(parts);
  parallel_for(parts, parts, [&](int64_t p) {
    const int64_t e0 = m * p / parts, e1 = m * (p + 1) / parts;
    for (int list = 0; list < 3; ++list) lists[p * 3 + list].reserve(static_cast<size_t>(list < 2 ? e1 - e0 : w));
    for (int64_t e = e0; e < e1; ++e) {
      const int64_t u = edges[2 * e], v = edges[2 * e + 1];
      std::string err = given_edge_error(u, v, w, n);
      if (!err.empty()) {
        errors[p] = std::move(err);
        return;
      }
      const int list = !split ? 0 : (u < s0 && v < s0) ? 0 : (u >= s0 && v >= s0) ? 1 : 2;
      lists[p * 3 + list].vec().push_back(Item::make(squared_distance(guide, f, n, u, v), static_cast<uint32_t>(e)));
    }
  });
  for (const std::string& err : errors) {
    if (!err.empty()) throw std::invalid_argument(err);
  }
  auto gather = [&](int list, Scratch<Item>& dst) {  // parts in order: id order
    size_t total = 0;
    for (int p = 0; p < parts; ++p) total += lists[p * 3 + list].size();
    dst.reserve(total);
    for (int p = 0; p < parts; ++p) {
      const Buffer<Item>& src = lists[p * 3 + list].vec();
      dst.vec().insert(dst.vec().end(), src.begin(), src.end());
    }
  };
  if (!split) {
    one_piece_tree(n, lists[0].vec(), ends, true, tree);
    return;
  }
  two_band_tree<T>(h, w, ends, true, [&](int b, Scratch<Item>& it, Scratch<Item>& seam) {
    gather(b, it);
    if (b == 0) gather(2, seam);
  }, tree);
}

// Writes a reconstruction tree into `out`: breadth-first parent links and heights, and the MST
// edges and weights when asked.
template <typename T, typename Endpoints>
void write_tree(const MergeTree<T>& tree, Endpoints ends, const TreeBuffers<T>& out) {
  write_tree_edges(tree, ends, out);
  renumber_breadth_first(tree, out);
}

template <typename T>
void build_grid_tree(const T* guide, int64_t h, int64_t w, int64_t f, const TreeBuffers<T>& out, int threads) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  MergeTree<T> tree;
  grid_merge_tree(guide, h, w, f, threads, tree);
  write_tree(tree, GridEndpoints{w}, out);
}

template <typename T>
void build_given_tree(const T* guide, int64_t h, int64_t w, int64_t f, const int64_t* edges,
                      const TreeBuffers<T>& out, int threads) {
  const int64_t n = h * w;
  if (n == 1) {
    out.parent[0] = -1;
    return;
  }
  MergeTree<T> tree;
  given_merge_tree(guide, h, w, f, edges, threads, tree);
  write_tree(tree, ListEndpoints{edges}, out);
}

}  // namespace clipapro
