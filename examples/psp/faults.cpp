#include "faults.hpp"

namespace psp {

double Faults::unit() { return static_cast<double>(random_() >> 11) * 0x1.0p-53; }

FaultDraw Faults::draw() {
    std::lock_guard lock(mutex_);
    FaultDraw draw;
    // One draw against the cumulative rates of the faults before execution, one for those after.
    double before = unit();
    if ((before -= options_.error_rate) < 0)
        draw.before = FaultDraw::Before::error;
    else if ((before -= options_.rate_limit_rate) < 0)
        draw.before = FaultDraw::Before::rate_limit;
    else if ((before -= options_.reset_rate) < 0)
        draw.before = FaultDraw::Before::reset;
    double after = unit();
    if ((after -= options_.lose_answer_rate) < 0)
        draw.after = FaultDraw::After::lose_answer;
    else if ((after -= options_.late_booking_rate) < 0)
        draw.after = FaultDraw::After::late_booking;
    draw.latency = options_.latency_min;
    if (options_.latency_max > options_.latency_min) {
        auto const spread = static_cast<std::uint64_t>((options_.latency_max - options_.latency_min).count()) + 1;
        draw.latency += std::chrono::milliseconds(static_cast<std::int64_t>(random_() % spread));
    }
    return draw;
}

} // namespace psp
