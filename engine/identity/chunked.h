// chunked_vector: a growable array that never moves what it holds.
//
// The index's per-record tables reach millions of entries. A std::vector
// doubles by copying all of them at once: at a million records one upsert in
// a million stalls for tens of milliseconds (and holds the identity view's
// exclusive lock meanwhile), so the cost of the next record depends on how
// big the index is. Here growth allocates one more fixed-size chunk; indexing
// is one shift, one mask and a load from a small table of chunk pointers that
// stays in cache.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace yilian::identity {

template <class T, unsigned ChunkBits = 14>
class chunked_vector {
  static constexpr std::size_t chunk = std::size_t{1} << ChunkBits;

 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::size_t capacity() const noexcept { return chunks_.size() * chunk; }

  T& operator[](std::size_t i) noexcept { return chunks_[i >> ChunkBits][i & (chunk - 1)]; }
  const T& operator[](std::size_t i) const noexcept { return chunks_[i >> ChunkBits][i & (chunk - 1)]; }
  T& back() noexcept { return (*this)[size_ - 1]; }
  const T& back() const noexcept { return (*this)[size_ - 1]; }

  // Read-only forward iteration, in index order.
  class const_iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    const_iterator() = default;
    const_iterator(const chunked_vector* v, std::size_t i) : v_(v), i_(i) {}
    const T& operator*() const noexcept { return (*v_)[i_]; }
    const T* operator->() const noexcept { return &(*v_)[i_]; }
    const_iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    const_iterator operator++(int) noexcept {
      const_iterator was = *this;
      ++i_;
      return was;
    }
    bool operator==(const const_iterator& o) const noexcept { return i_ == o.i_; }

   private:
    const chunked_vector* v_ = nullptr;
    std::size_t i_ = 0;
  };
  const_iterator begin() const noexcept { return {this, 0}; }
  const_iterator end() const noexcept { return {this, size_}; }

  template <class... A>
  T& emplace_back(A&&... a) {
    if (size_ == capacity()) chunks_.push_back(std::make_unique<T[]>(chunk));
    T& slot = (*this)[size_];
    slot = T(std::forward<A>(a)...);
    ++size_;
    return slot;
  }
  void push_back(T v) { emplace_back(std::move(v)); }
  // Grows to n elements, the new ones equal to `fill` (never shrinks).
  void grow_to(std::size_t n, const T& fill = T()) {
    while (capacity() < n) chunks_.push_back(std::make_unique<T[]>(chunk));
    for (; size_ < n; ++size_) (*this)[size_] = fill;
  }

 private:
  std::vector<std::unique_ptr<T[]>> chunks_;
  std::size_t size_ = 0;
};

}  // namespace yilian::identity
