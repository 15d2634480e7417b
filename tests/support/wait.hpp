#pragma once
// Waiting on a condition another thread makes true, with a deadline that
// fails the test instead of hanging it (never a sleep to synchronise).

#include <chrono>
#include <thread>

namespace test {

/// Waits (at most 5 s, yielding between looks) until `condition()` holds; whether it did.
template <class Condition>
bool holds_within_5s(Condition condition) {
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::yield();
    }
    return true;
}

} // namespace test
