#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>

namespace psp {

/// How unkind the provider is to every charge request, on top of what the
/// test cards do. Rates are probabilities per request, drawn from a seeded
/// generator so that a run is repeatable.
struct FaultOptions {
    double error_rate = 0.0;                  ///< answer 500 before anything executes (nothing booked, nothing saved)
    double rate_limit_rate = 0.0;             ///< answer 429 before anything executes
    double reset_rate = 0.0;                  ///< reset the connection before anything executes
    double lose_answer_rate = 0.0;            ///< book the charge, then reset the connection instead of answering
    double late_booking_rate = 0.0;           ///< never answer; book the charge `booking_delay` later
    std::chrono::milliseconds latency_min{0}; ///< every answer waits between min and max
    std::chrono::milliseconds latency_max{0};
    std::uint64_t seed = 1;
};

/// What the faults decided for one request, before and after it executes.
struct FaultDraw {
    enum class Before { none, error, rate_limit, reset } before = Before::none;
    enum class After { none, lose_answer, late_booking } after = After::none;
    std::chrono::milliseconds latency{0};
};

/// Draws the faults of each request. Thread-safe.
class Faults {
public:
    explicit Faults(FaultOptions options) : options_(options), random_(options.seed) {}
    FaultDraw draw();

private:
    double unit(); // [0, 1)
    FaultOptions const options_;
    std::mutex mutex_;
    std::mt19937_64 random_; // Owned by: mutex_
};

} // namespace psp
