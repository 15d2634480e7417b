#pragma once
// Optimistic concurrency, written once: a use case loads, decides and commits;
// when an aggregate moved under it (`conflict`), it does it all again.

#include <payments/error.hpp>

namespace payments::application {

/// How often a use case tries again when the store reports a conflict.
inline constexpr int commit_attempts = 8;

/// Runs `attempt` (load, decide, commit: a Result) until it does not fail with
/// `conflict`, at most commit_attempts times; returns the last result.
template <class Attempt>
auto retry_on_conflict(Attempt&& attempt) {
    auto result = attempt();
    for (int round = 1; round < commit_attempts && !result && result.error().code == ErrorCode::conflict; ++round)
        result = attempt();
    return result;
}

} // namespace payments::application
