#include <payments/infrastructure/system/clocks.hpp>

#include <chrono>

namespace payments::infrastructure {

using domain::Duration;
using domain::Timestamp;

Timestamp SystemClock::now() const {
    return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
}

ManualClock::ManualClock(Timestamp start) : micros_(start.time_since_epoch().count()) {}

Timestamp ManualClock::default_start() {
    using namespace std::chrono;
    return Timestamp(sys_days(year(2026) / January / 1).time_since_epoch());
}

Timestamp ManualClock::now() const { return Timestamp(Duration(micros_.load(std::memory_order_acquire))); }

void ManualClock::advance(Duration by) {
    if (by > Duration::zero()) micros_.fetch_add(by.count(), std::memory_order_acq_rel);
}

void ManualClock::advance_to(Timestamp to) {
    auto target = to.time_since_epoch().count();
    auto current = micros_.load(std::memory_order_acquire);
    while (current < target && !micros_.compare_exchange_weak(current, target, std::memory_order_acq_rel)) {
    }
}

} // namespace payments::infrastructure
