// Reusable scratch buffers. Large temporaries freed after each call go back to the OS, and the next
// call pays page faults on fresh memory (measured: ~7 ms of a 17 ms tree build at 512x512). Buffers
// taken from this pool keep their pages between calls, up to 512 MB per element type.
//
// The sanitizer build (CLIPAPRO_SANITIZE) keeps nothing: every buffer is fresh and exactly sized,
// so that AddressSanitizer sees an overrun past the requested size (a pooled buffer's spare
// capacity would hide it).
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <mutex>
#include <utility>
#include <vector>

namespace clipapro {

// An allocator whose resize() leaves new trivially constructible elements uninitialised: scratch
// arrays are always written before they are read, and zero-filling megabytes per call is not free.
template <typename T>
struct NoInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  NoInitAllocator() = default;
  template <typename U>
  NoInitAllocator(const NoInitAllocator<U>&) {}  // NOLINT: converting constructor, as allocators need
  template <typename U>
  void construct(U* p) {
    ::new (static_cast<void*>(p)) U;  // default-initialise: no zeroing
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// A vector whose resize() does not zero new elements (see NoInitAllocator).
template <typename T>
using Buffer = std::vector<T, NoInitAllocator<T>>;

template <typename T>
class ScratchPool {
 public:
  static ScratchPool& instance() {
    static ScratchPool pool;
    return pool;
  }
  // The smallest kept buffer that holds `min_capacity` elements, else the largest (it will grow),
  // else a new one. A buffer too small for its use would be reallocated on fresh pages.
  Buffer<T> take(size_t min_capacity) {
#ifdef CLIPAPRO_SANITIZE
    (void)min_capacity;
    return {};
#endif
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return {};
    size_t best = 0;
    for (size_t i = 1; i < free_.size(); ++i) {
      const size_t c = free_[i].capacity(), b = free_[best].capacity();
      const bool fits = c >= min_capacity, best_fits = b >= min_capacity;
      if ((fits && (!best_fits || c < b)) || (!fits && !best_fits && c > b)) best = i;
    }
    Buffer<T> v = std::move(free_[best]);
    free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
    kept_bytes_ -= v.capacity() * sizeof(T);
    return v;
  }
  void give(Buffer<T>&& v) {
#ifdef CLIPAPRO_SANITIZE
    Buffer<T>().swap(v);
    return;
#endif
    const size_t bytes = v.capacity() * sizeof(T);
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() >= kMaxKept || kept_bytes_ + bytes > kMaxKeptBytes) return;  // let it go
    kept_bytes_ += bytes;
    free_.push_back(std::move(v));
  }

 private:
  static constexpr size_t kMaxKept = 16;
  static constexpr size_t kMaxKeptBytes = size_t(512) << 20;  // per element type
  std::mutex mu_;
  std::vector<Buffer<T>> free_;
  size_t kept_bytes_ = 0;
};

// A Buffer<T> borrowed from the pool for the lifetime of this object. It takes a pooled buffer
// when it first needs room (reserve, resize, assign), the one that fits best.
template <typename T>
class Scratch {
 public:
  Scratch() = default;
  // n elements, not initialised.
  explicit Scratch(size_t n) { resize(n); }
  // n elements equal to `value`.
  Scratch(size_t n, const T& value) { assign(n, value); }
  ~Scratch() {
    if (v_.capacity()) ScratchPool<T>::instance().give(std::move(v_));
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void reserve(size_t n) {
    if (v_.capacity() >= n) return;
#ifdef CLIPAPRO_SANITIZE
    if (v_.empty()) Buffer<T>().swap(v_);  // exactly n, not the doubling of a growing vector
#endif
    if (v_.empty()) {
      if (v_.capacity()) ScratchPool<T>::instance().give(std::move(v_));
      v_ = ScratchPool<T>::instance().take(n);
      v_.clear();
    }
    v_.reserve(n);
  }
  void resize(size_t n) {
    reserve(n);
    v_.resize(n);
  }
  void assign(size_t n, const T& value) {
    reserve(n);
    v_.assign(n, value);
  }
  Buffer<T>& vec() { return v_; }
  const Buffer<T>& vec() const { return v_; }
  T* data() { return v_.data(); }
  const T* data() const { return v_.data(); }
  size_t size() const { return v_.size(); }
  T& operator[](size_t i) { return v_[i]; }
  const T& operator[](size_t i) const { return v_[i]; }

 private:
  Buffer<T> v_;
};

}  // namespace clipapro
