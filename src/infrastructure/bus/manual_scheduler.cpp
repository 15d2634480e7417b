#include <payments/infrastructure/bus/manual_scheduler.hpp>

#include "timer_queue.hpp"

namespace payments::infrastructure {

ManualScheduler::ManualScheduler(ManualClock& clock) : clock_(clock), queue_(std::make_unique<TimerQueue>()) {}

ManualScheduler::~ManualScheduler() = default;

application::TimerId ManualScheduler::call_at(domain::Timestamp at, std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    return queue_->add(at, std::move(fn));
}

void ManualScheduler::post(std::function<void()> fn) { call_at(clock_.now(), std::move(fn)); }

bool ManualScheduler::cancel(application::TimerId id) {
    std::lock_guard lock(mutex_);
    return queue_->cancel(id);
}

std::size_t ManualScheduler::run_due() {
    std::size_t ran = 0;
    for (;;) {
        std::vector<std::function<void()>> due;
        {
            std::lock_guard lock(mutex_);
            due = queue_->take_due(clock_.now());
        }
        if (due.empty()) return ran;
        for (auto& fn : due) fn();
        ran += due.size();
    }
}

std::optional<domain::Timestamp> ManualScheduler::next_due() const {
    std::lock_guard lock(mutex_);
    return queue_->earliest();
}

bool ManualScheduler::advance_to_next() {
    auto next = next_due();
    if (!next) return false;
    clock_.advance_to(*next);
    run_due();
    return true;
}

std::size_t ManualScheduler::pending() const {
    std::lock_guard lock(mutex_);
    return queue_->size();
}

} // namespace payments::infrastructure
