// Joins the reconstruction trees of two bands of pixels, built on two threads, into the tree of
// the whole grid.
//
// Band A holds the pixels [0, s0), band B the pixels [s0, n); each band ran Kruskal on the edges
// inside it, and the seam edges (between the last row of A and the first row of B) were kept
// aside. Every edge of the grid's MST is in one of the three lists: an MST edge inside a band is
// never the largest edge of a cycle, so the band's own Kruskal took it. Kruskal on the union of the
// three sorted lists in (weight, id) order therefore makes exactly the merges of one Kruskal over
// the whole grid.
//
// Most of that union needs no work. A band merge whose subtree holds no seam pixel ("untagged")
// can neither be refused nor see its children change: it stays where it is, as it is. Only the
// tagged band merges (about 14% on photos and noise alike) and the seam edges are replayed, in
// (weight, id) order, with a union-find over the 2w seam pixels that follows which seam-touching
// components were joined across the seam. Replayed merges go to the glue slots of the MergeTree,
// and their band slots are marked dead.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "common/keyed_id.h"
#include "common/scratch.h"
#include "tree/kruskal.h"

namespace clipapro {

// Where the pieces sit: pixels [0, s0) are band A, [s0, n) band B, seam pixels [seam_lo, seam_hi);
// band b's merges are band slots first_slot[b], first_slot[b] + 1, ...
struct SeamLayout {
  int64_t n, s0, seam_lo, seam_hi;
  int64_t first_slot[2];
  bool on_seam(int64_t p) const { return p >= seam_lo && p < seam_hi; }
};

// On band b's thread, after its Kruskal made `merges` merges: marks the band's tagged merges (and
// its unused slots) dead in tree.dead (zeroed beforehand) and lists the tagged ones in creation
// order.
template <typename T>
void split_band(const SeamLayout& lay, int b, int64_t merges, MergeTree<T>& tree, Scratch<int32_t>& tagged) {
  const int64_t first = lay.first_slot[b], end = b ? tree.bands.size() : lay.first_slot[1];
  const int32_t* const child = tree.bands.child.data();
  uint8_t* const dead = tree.dead.data();
  tagged.resize(static_cast<size_t>(merges));
  // Branch-free: whether a child is a pixel or a merge is a coin toss the predictor cannot learn.
  // Locals: dead[] is bytes, whose stores may alias anything, so fields would be reloaded.
  const int64_t n = lay.n, seam_lo = lay.seam_lo;
  const uint64_t seam_len = static_cast<uint64_t>(lay.seam_hi - lay.seam_lo);
  auto touches_seam = [=](int32_t c) -> uint8_t {
    const uint8_t pixel = c < n;  // 0 or 1; masks below instead of a select the compiler would branch on
    const int64_t mask = -static_cast<int64_t>(pixel);
    const int64_t slot = ((c - n) & ~mask) | (first & mask);  // own first slot for a pixel (read, unused)
    const uint8_t merge_tag = dead[slot];
    const uint8_t pixel_tag = static_cast<uint64_t>(c - seam_lo) < seam_len;
    return static_cast<uint8_t>((pixel_tag & pixel) | (merge_tag & (1 - pixel)));
  };
  int64_t count = 0;
  for (int64_t k = first; k < first + merges; ++k) {
    const uint8_t tag = touches_seam(child[2 * k]) | touches_seam(child[2 * k + 1]);
    dead[k] = tag;
    tagged[count] = static_cast<int32_t>(k);
    count += tag;
  }
  tagged.vec().resize(static_cast<size_t>(count));
  int32_t* const unused_child = tree.bands.child.data();
  for (int64_t k = first + merges; k < end; ++k) {  // unused slots: dead, with harmless children
    dead[k] = 1;
    unused_child[2 * k] = unused_child[2 * k + 1] = 0;
  }
}

namespace detail {

// Union-find over seam pixels, with the node that stands for each glued component.
class SeamSets {
 public:
  SeamSets(int64_t count, int64_t first_pixel) : up_(count), node_(count) {
    for (int64_t i = 0; i < count; ++i) {
      up_[i] = static_cast<int32_t>(i);
      node_[i] = static_cast<int32_t>(first_pixel + i);
    }
  }
  int32_t find(int32_t x) {
    while (up_[x] != x) {
      up_[x] = up_[up_[x]];
      x = up_[x];
    }
    return x;
  }
  int32_t join(int32_t a, int32_t b) {  // two roots; returns the new root
    up_[b] = a;
    return a;
  }
  int32_t& node(int32_t root) { return node_[root]; }

 private:
  std::vector<int32_t> up_, node_;
};

}  // namespace detail

// Replays the tagged merges of both bands and the sorted seam edges into the glue slots (see the
// file comment). With `require_tree`, a refused merge (a cycle) or a missing one raises
// std::invalid_argument naming "tree".
template <typename T, typename Endpoints>
void join_bands(const SeamLayout& lay, const Scratch<int32_t> (&tagged)[2], const Buffer<KeyedId<T>>& seam,
                Endpoints endpoints, bool require_tree, MergeTree<T>& tree) {
  using Item = KeyedId<T>;
  const int64_t n = lay.n, slots = tree.bands.size();
  const int32_t* const bchild = tree.bands.child.data();
  const Item* const bmerges = tree.bands.merges.data();
  const uint8_t* const dead = tree.dead.data();
  const int64_t nt[2] = {static_cast<int64_t>(tagged[0].size()), static_cast<int64_t>(tagged[1].size())};
  const int64_t ns = static_cast<int64_t>(seam.size());
  const int64_t live = [&] {  // merges that stay in band slots
    int64_t c = 0;
    for (int64_t k = 0; k < slots; ++k) c += dead[k] ? 0 : 1;
    return c;
  }();
  const int64_t needed = n - 1 - live;
  tree.glue.resize(needed);
  int32_t* const gchild = tree.glue.child.data();
  Item* const gmerges = tree.glue.merges.data();
  detail::SeamSets sets(lay.seam_hi - lay.seam_lo, lay.seam_lo);
  // For each replayed tagged merge (by band slot): a seam pixel of its component, as a set index.
  Scratch<int32_t> seam_of;
  seam_of.resize(static_cast<size_t>(slots));
  // A child's node in the joined tree and, when its component touches the seam, the component's
  // root in `sets` (else -1).
  auto resolve = [&](int32_t c, int32_t* root) -> int32_t {
    int32_t s;
    if (c < n) {
      if (!lay.on_seam(c)) {
        *root = -1;
        return c;
      }
      s = static_cast<int32_t>(c - lay.seam_lo);
    } else {
      if (!dead[c - n]) {
        *root = -1;
        return c;
      }
      s = seam_of[c - n];
    }
    *root = sets.find(s);
    return sets.node(*root);
  };
  auto cycle = [] { throw std::invalid_argument("tree is not a spanning tree of the grid: it contains a cycle"); };
  int64_t it[2] = {0, 0}, is = 0, g = 0;
  auto emit = [&](int32_t c0, int32_t c1, const Item& e) {
    if (g >= needed) cycle();  // more merges than a spanning tree has
    gchild[2 * g] = c0;
    gchild[2 * g + 1] = c1;
    gmerges[g] = e;
    return static_cast<int32_t>(n + slots + g++);
  };
  while (true) {
    const Item ea = it[0] < nt[0] ? bmerges[tagged[0][it[0]]] : Item::last();
    const Item eb = it[1] < nt[1] ? bmerges[tagged[1][it[1]]] : Item::last();
    const int b = Item::before(ea, eb) ? 0 : 1;
    if (is < ns && Item::before(seam[is], b == 0 ? ea : eb)) {  // a seam edge comes first
      const Item se = seam[is++];
      int64_t u, v;
      endpoints(se.id(), &u, &v);
      const int32_t ru = sets.find(static_cast<int32_t>(u - lay.seam_lo));
      const int32_t rv = sets.find(static_cast<int32_t>(v - lay.seam_lo));
      if (ru == rv) {
        if (require_tree) cycle();
        continue;
      }
      const int32_t node = emit(sets.node(ru), sets.node(rv), se);
      sets.node(sets.join(ru, rv)) = node;
      continue;
    }
    if (it[b] >= nt[b]) break;  // every list is spent
    const int64_t k = tagged[b][it[b]++];
    int32_t r0, r1;
    const int32_t c0 = resolve(bchild[2 * k], &r0);
    const int32_t c1 = resolve(bchild[2 * k + 1], &r1);
    const int32_t root = r0 >= 0 ? r0 : r1;  // a tagged merge has a seam pixel below a child
    seam_of[k] = root;
    if (r0 >= 0 && r0 == r1) {  // already joined across the seam
      if (require_tree) cycle();
      continue;
    }
    const int32_t node = emit(c0, c1, bmerges[k]);
    sets.node(r0 >= 0 && r1 >= 0 ? sets.join(r0, r1) : root) = node;
  }
  if (g != needed) {
    throw std::invalid_argument("tree is not a spanning tree of the grid: it does not connect all pixels");
  }
}

}  // namespace clipapro
