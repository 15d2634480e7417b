#pragma once

#include "packed_event.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace payments::infrastructure {

// Events waiting for their time, ordered by (due time, order of scheduling):
// a 4-ary heap of 24-byte entries over packed events, so that a pending retry
// costs one small heap block, not a tree node holding a whole event, and a
// million of them sift through half the levels (and cache misses) of a binary heap.
// Not thread-safe: its owner locks.
class ScheduledEvents {
public:
    void push(domain::Timestamp at, domain::Event const& event) {
        heap_.push_back({at, next_seq_++, PackedEvent(event)});
        sift_up(heap_.size() - 1);
    }

    std::optional<domain::Timestamp> earliest() const {
        if (heap_.empty()) return std::nullopt;
        return heap_.front().at;
    }

    // Calls `fn(event)` for the events due at `now`, at most `limit`, in
    // order, removing each.
    template <class F>
    void pop_due(domain::Timestamp now, std::size_t limit, F&& fn) {
        for (std::size_t n = 0; n < limit && !heap_.empty() && heap_.front().at <= now; ++n) {
            fn(pop_front().event.unpack());
        }
        // Give back what a burst of retries left behind.
        if (heap_.capacity() > 1024 && heap_.size() < heap_.capacity() / 4) heap_.shrink_to_fit();
    }

    // Removes every event, in order.
    std::vector<std::pair<domain::Timestamp, domain::Event>> take_all() {
        std::vector<std::pair<domain::Timestamp, domain::Event>> all;
        all.reserve(heap_.size());
        while (!heap_.empty()) {
            Entry entry = pop_front();
            all.emplace_back(entry.at, entry.event.unpack());
        }
        heap_ = std::vector<Entry>();
        return all;
    }

    std::size_t size() const noexcept { return heap_.size(); }
    bool empty() const noexcept { return heap_.empty(); }

private:
    struct Entry {
        domain::Timestamp at;
        std::uint64_t seq;
        PackedEvent event;
    };

    static constexpr std::size_t arity = 4;

    static bool before(Entry const& a, Entry const& b) {
        return a.at < b.at || (a.at == b.at && a.seq < b.seq);
    }

    void sift_up(std::size_t i) {
        Entry moving = std::move(heap_[i]);
        while (i > 0) {
            std::size_t const parent = (i - 1) / arity;
            if (!before(moving, heap_[parent])) break;
            heap_[i] = std::move(heap_[parent]);
            i = parent;
        }
        heap_[i] = std::move(moving);
    }

    Entry pop_front() {
        Entry front = std::move(heap_.front());
        Entry moving = std::move(heap_.back());
        heap_.pop_back();
        if (heap_.empty()) return front;
        std::size_t i = 0;
        for (;;) {
            std::size_t const first = i * arity + 1;
            if (first >= heap_.size()) break;
            std::size_t best = first;
            for (std::size_t c = first + 1; c < std::min(first + arity, heap_.size()); ++c)
                if (before(heap_[c], heap_[best])) best = c;
            if (!before(heap_[best], moving)) break;
            heap_[i] = std::move(heap_[best]);
            i = best;
        }
        heap_[i] = std::move(moving);
        return front;
    }

    std::vector<Entry> heap_;
    std::uint64_t next_seq_ = 0;
};

} // namespace payments::infrastructure
