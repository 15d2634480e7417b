#pragma once
// A bounded cache of committed aggregates (invoices or payments) in front of a
// durable store: the commands that just wrote an aggregate read it again at
// once (the charge reads the payment its request wrote, the settlement both),
// and a read from the cache costs no read transaction, no page copy and no
// decoding. Least recently used entries leave first, so memory is set by the
// capacity, not by how many aggregates the file holds.

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

namespace payments::infrastructure {

/// Aggregates by id, at most `capacity` of them; every entry is a committed
/// version. Thread-safe.
///
/// The rule that keeps it true: a commit writes its aggregates through after
/// it is durable, newer versions only; a read from the file fills a missing
/// entry only when no commit wrote through while it read (the read's snapshot
/// may be older than a commit that finished meanwhile and whose entry was
/// evicted). A commit refused for a version conflict drops its entries, so
/// that the retry reads the file.
template <class Id, class Aggregate>
class AggregateCache {
public:
    /// A cache of at most `capacity` aggregates (0: caches nothing).
    explicit AggregateCache(std::size_t capacity) : capacity_(capacity) {}

    /// The cached aggregate, most recently used from now on.
    std::optional<Aggregate> find(Id const& id) {
        std::lock_guard guard(mutex_);
        auto it = index_.find(id);
        if (it == index_.end()) return std::nullopt;
        order_.splice(order_.begin(), order_, it->second);
        return it->second->second;
    }

    /// A stamp to pass to fill() after reading the file.
    std::uint64_t stamp() const {
        std::lock_guard guard(mutex_);
        return writes_;
    }

    /// Keeps `aggregate`, read from the file after `stamp()` answered `since`,
    /// unless a commit wrote through in between.
    void fill(Id const& id, Aggregate const& aggregate, std::uint64_t since) {
        std::lock_guard guard(mutex_);
        if (writes_ != since || index_.contains(id)) return;
        insert(id, aggregate);
    }

    /// Keeps `aggregate`, just committed, unless a newer version is there.
    void write_through(Id const& id, Aggregate const& aggregate) {
        std::lock_guard guard(mutex_);
        ++writes_;
        if (auto it = index_.find(id); it != index_.end()) {
            if (it->second->second.version() < aggregate.version()) it->second->second = aggregate;
            order_.splice(order_.begin(), order_, it->second);
            return;
        }
        insert(id, aggregate);
    }

    /// Forgets `id` (its commit conflicted: the file knows better).
    void drop(Id const& id) {
        std::lock_guard guard(mutex_);
        ++writes_;
        if (auto it = index_.find(id); it != index_.end()) {
            order_.erase(it->second);
            index_.erase(it);
        }
    }

    /// How many aggregates are cached.
    std::size_t size() const {
        std::lock_guard guard(mutex_);
        return index_.size();
    }

private:
    using Order = std::list<std::pair<Id, Aggregate>>;

    void insert(Id const& id, Aggregate const& aggregate) { // mutex_ held
        if (capacity_ == 0) return;
        if (index_.size() >= capacity_) {
            index_.erase(order_.back().first);
            order_.pop_back();
        }
        order_.emplace_front(id, aggregate);
        index_.emplace(id, order_.begin());
    }

    std::size_t const capacity_;
    mutable std::mutex mutex_;
    Order order_;                                                  // Owned by: mutex_; most recent first
    std::unordered_map<Id, typename Order::iterator> index_;       // Owned by: mutex_
    std::uint64_t writes_ = 0;                                     // Owned by: mutex_
};

} // namespace payments::infrastructure
