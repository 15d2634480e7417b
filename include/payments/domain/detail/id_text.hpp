#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

namespace payments::domain::detail {

// The characters of an id: up to 39 in place (a generated id has 30), longer
// ones (at most 64) on the heap. 40 bytes, against 32 plus a heap block for a
// std::string of that length: ids are copied and stored everywhere.
class IdText {
public:
    static constexpr std::size_t inline_capacity = 39;

    IdText() noexcept : inline_{}, size_(0) {}

    explicit IdText(std::string_view text) : size_(static_cast<std::uint8_t>(text.size())) {
        if (on_heap()) {
            heap_ = new char[text.size()];
            std::memcpy(heap_, text.data(), text.size());
        } else {
            // All of the buffer is written, so that moves copy it whole: a
            // fixed-size copy compiles to a few moves, a variable one to a call.
            std::memset(inline_, 0, inline_capacity);
            std::memcpy(inline_, text.data(), text.size());
        }
    }

    IdText(IdText const& other) : IdText(other.view()) {}

    IdText(IdText&& other) noexcept : size_(other.size_) {
        if (on_heap()) {
            heap_ = std::exchange(other.heap_, nullptr);
            other.size_ = 0;
        } else {
            std::memcpy(inline_, other.inline_, inline_capacity);
        }
    }

    IdText& operator=(IdText const& other) {
        if (this != &other) *this = IdText(other);
        return *this;
    }

    IdText& operator=(IdText&& other) noexcept {
        if (this == &other) return *this;
        release();
        size_ = other.size_;
        if (on_heap()) {
            heap_ = std::exchange(other.heap_, nullptr);
            other.size_ = 0;
        } else {
            std::memcpy(inline_, other.inline_, inline_capacity);
        }
        return *this;
    }

    ~IdText() { release(); }

    std::string_view view() const noexcept {
        return on_heap() ? std::string_view(heap_, size_) : std::string_view(inline_, size_);
    }

private:
    bool on_heap() const noexcept { return size_ > inline_capacity; }
    void release() noexcept {
        if (on_heap()) delete[] heap_;
    }

    union {
        char inline_[inline_capacity];
        char* heap_;
    };
    std::uint8_t size_;
};

} // namespace payments::domain::detail
