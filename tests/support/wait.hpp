#pragma once
// Waiting on a condition another thread makes true, with a deadline that
// fails the test instead of hanging it (never a sleep to synchronise).

#include <chrono>
#include <thread>
#include <utility>

namespace test {

/// Waits (at most `limit`, yielding between looks) until `condition()` holds; whether it did.
template <class Condition>
bool holds_within(std::chrono::steady_clock::duration limit, Condition condition) {
    auto const deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::yield();
    }
    return true;
}

/// holds_within() 5 s.
template <class Condition>
bool holds_within_5s(Condition condition) {
    return holds_within(std::chrono::seconds(5), std::move(condition));
}

} // namespace test
