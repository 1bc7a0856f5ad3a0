// Reusable scratch buffers. Large temporaries freed after each call go back to the OS, and the next
// call pays page faults on fresh memory (measured: ~7 ms of a 17 ms tree build at 512x512). Buffers
// taken from this pool keep their pages between calls; very large ones are not kept.
#pragma once

#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

namespace clipapro {

template <typename T>
class ScratchPool {
 public:
  static ScratchPool& instance() {
    static ScratchPool pool;
    return pool;
  }
  std::vector<T> take() {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.empty()) return {};
    std::vector<T> v = std::move(free_.back());
    free_.pop_back();
    return v;
  }
  void give(std::vector<T>&& v) {
    if (v.capacity() * sizeof(T) > kMaxKeptBytes) return;  // let very large buffers go
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < kMaxKept) free_.push_back(std::move(v));
  }

 private:
  static constexpr size_t kMaxKept = 16;
  static constexpr size_t kMaxKeptBytes = size_t(256) << 20;
  std::mutex mu_;
  std::vector<std::vector<T>> free_;
};

// A std::vector<T> borrowed from the pool for the lifetime of this object.
template <typename T>
class Scratch {
 public:
  Scratch() : v_(ScratchPool<T>::instance().take()) { v_.clear(); }
  explicit Scratch(size_t n, const T& value = T()) : Scratch() { v_.assign(n, value); }
  ~Scratch() { ScratchPool<T>::instance().give(std::move(v_)); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  std::vector<T>& vec() { return v_; }
  T* data() { return v_.data(); }
  const T* data() const { return v_.data(); }
  size_t size() const { return v_.size(); }
  T& operator[](size_t i) { return v_[i]; }
  const T& operator[](size_t i) const { return v_[i]; }

 private:
  std::vector<T> v_;
};

}  // namespace clipapro
