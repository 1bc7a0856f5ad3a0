// Local propagation: an iterated, normalised k x k Gaussian colour-kernel stencil.
//
// Kernel weights depend only on the image, so they are computed once per image ((k*k, H, W),
// normalised, zero outside the image); each iteration is then a stencil over planar channels.
// Channels (and images) are independent across iterations, so each worker runs all iterations of
// its planes in its own zero-padded ping-pong buffers, with no barrier between iterations.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/parallel.h"

namespace clipapro {

struct LocalParams {
  int64_t kernel_size = 5;
  int64_t dilation = 1;
  double zeta = 0.15;
  int64_t iterations = 20;
};

// Normalised kernel weights of one image (f, h, w) -> wts (k*k, h, w).
template <typename T>
void local_weights(const T* img, int64_t f, int64_t h, int64_t w, const LocalParams& p, T* wts) {
  const int64_t r = p.kernel_size / 2, kk = p.kernel_size * p.kernel_size, n = h * w;
  const double inv = 1.0 / (p.zeta * p.zeta);
  std::vector<T> d2(w);
  int64_t o = 0;
  for (int64_t dy = -r; dy <= r; ++dy) {
    for (int64_t dx = -r; dx <= r; ++dx, ++o) {
      const int64_t oy = dy * p.dilation, ox = dx * p.dilation;
      T* wo = wts + o * n;
      for (int64_t y = 0; y < h; ++y) {
        T* row = wo + y * w;
        const int64_t yy = y + oy;
        if (yy < 0 || yy >= h) {
          std::fill(row, row + w, T(0));
          continue;
        }
        const int64_t x0 = std::max<int64_t>(0, -ox), x1 = std::min<int64_t>(w, w - ox);
        std::fill(d2.begin(), d2.end(), T(0));
        for (int64_t c = 0; c < f; ++c) {
          const T* a = img + c * n + y * w;
          const T* b = img + c * n + yy * w + ox;
          for (int64_t x = x0; x < x1; ++x) {
            const T d = a[x] - b[x];
            d2[x] += d * d;
          }
        }
        for (int64_t x = 0; x < w; ++x) {
          row[x] = (x >= x0 && x < x1) ? static_cast<T>(std::exp(-static_cast<double>(d2[x]) * inv)) : T(0);
        }
      }
    }
  }
  // Normalise over the k*k offsets (the centre weight is 1, so the sum is never zero).
  std::vector<T> sum(n, T(0));
  for (int64_t q = 0; q < kk; ++q) {
    const T* wq = wts + q * n;
    for (int64_t i = 0; i < n; ++i) sum[i] += wq[i];
  }
  for (int64_t i = 0; i < n; ++i) sum[i] = T(1) / sum[i];
  for (int64_t q = 0; q < kk; ++q) {
    T* wq = wts + q * n;
    for (int64_t i = 0; i < n; ++i) wq[i] *= sum[i];
  }
}

// All iterations on one plane (h, w): in -> out, with the image's normalised weights. With
// threads > 1 the rows of each iteration are split among threads (one barrier per iteration): used
// when there are fewer planes than threads.
template <typename T>
void local_plane(const T* in, const T* wts, int64_t h, int64_t w, const LocalParams& p,
                 std::vector<T>& buf_a, std::vector<T>& buf_b, T* out, int threads = 1) {
  const int64_t r = p.kernel_size / 2, pad = r * p.dilation, kk = p.kernel_size * p.kernel_size;
  const int64_t wp = w + 2 * pad, hp = h + 2 * pad, n = h * w;
  if (p.iterations == 0) {
    std::memcpy(out, in, sizeof(T) * n);
    return;
  }
  buf_a.assign(hp * wp, T(0));
  buf_b.assign(hp * wp, T(0));
  for (int64_t y = 0; y < h; ++y) std::memcpy(&buf_a[(y + pad) * wp + pad], in + y * w, sizeof(T) * w);
  std::vector<int64_t> shift(kk);
  {
    int64_t o = 0;
    for (int64_t dy = -r; dy <= r; ++dy)
      for (int64_t dx = -r; dx <= r; ++dx) shift[o++] = dy * p.dilation * wp + dx * p.dilation;
  }
  constexpr int64_t kChunk = 64;
  T* src = buf_a.data();
  T* dst = buf_b.data();
  auto rows = [&](int64_t y0, int64_t y1) {
    for (int64_t y = y0; y < y1; ++y) {
      const T* center = src + (y + pad) * wp + pad;
      T* orow = dst + (y + pad) * wp + pad;
      for (int64_t x0 = 0; x0 < w; x0 += kChunk) {
        const int64_t len = std::min(kChunk, w - x0);
        T acc[kChunk];
        for (int64_t i = 0; i < len; ++i) acc[i] = T(0);
        for (int64_t o = 0; o < kk; ++o) {
          const T* wq = wts + o * n + y * w + x0;
          const T* sq = center + shift[o] + x0;
          for (int64_t i = 0; i < len; ++i) acc[i] += wq[i] * sq[i];
        }
        std::memcpy(orow + x0, acc, sizeof(T) * len);
      }
    }
  };
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, h / 16));
  for (int64_t it = 0; it < p.iterations; ++it) {
    if (parts == 1) {
      rows(0, h);
    } else {
      parallel_for(parts, static_cast<int>(parts), [&](int64_t q) { rows(q * h / parts, (q + 1) * h / parts); });
    }
    std::swap(src, dst);
  }
  for (int64_t y = 0; y < h; ++y) std::memcpy(out + y * w, src + (y + pad) * wp + pad, sizeof(T) * w);
}

// values (b, c, h, w), image (b, f, h, w) -> out (b, c, h, w).
template <typename T>
void local_filter(const T* values, const T* image, int64_t b, int64_t c, int64_t f, int64_t h, int64_t w,
                  const LocalParams& p, int threads, T* out) {
  const int64_t n = h * w, kk = p.kernel_size * p.kernel_size;
  std::vector<T> wts(static_cast<size_t>(b * kk * n));
  parallel_for(b, threads, [&](int64_t i) { local_weights(image + i * f * n, f, h, w, p, wts.data() + i * kk * n); });
  const int64_t planes = b * c;
  if (planes < threads) {  // few planes: split the rows of each iteration instead
    std::vector<T> buf_a, buf_b;
    for (int64_t plane = 0; plane < planes; ++plane) {
      local_plane(values + plane * n, wts.data() + (plane / c) * kk * n, h, w, p, buf_a, buf_b, out + plane * n,
                  threads);
    }
    return;
  }
  const int workers = static_cast<int>(std::min<int64_t>(threads, planes));
  std::vector<std::vector<T>> bufs(2 * workers);
  parallel_for(workers, workers, [&](int64_t wkr) {
    for (int64_t plane = wkr; plane < planes; plane += workers) {
      local_plane(values + plane * n, wts.data() + (plane / c) * kk * n, h, w, p, bufs[2 * wkr], bufs[2 * wkr + 1],
                  out + plane * n);
    }
  });
}

}  // namespace clipapro
