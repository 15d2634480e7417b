#pragma once

#include <payments/application/scheduler.hpp>

#include <functional>
#include <map>
#include <optional>
#include <vector>

namespace payments::infrastructure {

// Pending calls ordered by (due time, order of scheduling); the core of both
// schedulers. Not thread-safe: its owner locks.
class TimerQueue {
public:
    application::TimerId add(domain::Timestamp at, std::function<void()> fn) {
        application::TimerId id{at, ++last_seq_};
        entries_.emplace(id, std::move(fn));
        return id;
    }

    bool cancel(application::TimerId id) { return entries_.erase(id) > 0; }

    std::optional<domain::Timestamp> earliest() const {
        if (entries_.empty()) return std::nullopt;
        return entries_.begin()->first.at;
    }

    // Removes and returns, in order, every call due at `now`.
    std::vector<std::function<void()>> take_due(domain::Timestamp now) {
        std::vector<std::function<void()>> due;
        while (!entries_.empty() && entries_.begin()->first.at <= now) {
            due.push_back(std::move(entries_.begin()->second));
            entries_.erase(entries_.begin());
        }
        return due;
    }

    std::size_t size() const noexcept { return entries_.size(); }
    void clear() { entries_.clear(); }

private:
    std::map<application::TimerId, std::function<void()>> entries_;
    std::uint64_t last_seq_ = 0;
};

} // namespace payments::infrastructure
