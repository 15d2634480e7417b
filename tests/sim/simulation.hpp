#pragma once
// Deterministic simulation of the whole library: the real domain, use cases
// and bus on one thread and simulated time, a seeded workload, injected
// faults, and an auditor that checks the invariants after every step.

#include "faulty_bus.hpp"

#include <payments/domain/retry_policy.hpp>
#include <payments/application/circuit_breaker.hpp>
#include <payments/infrastructure/gateway/simulated_gateway.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sim {

/// The workload of one run.
struct Config {
    int invoices = 12;
    int extra_requests = 24; ///< repeats, key reuse and manual retries over the window
    payments::domain::Duration window = 60s;
    payments::domain::RetryPolicy retry{};
    payments::domain::Duration gateway_timeout = 10s;
};

/// The faults of one seed, drawn from it.
struct Faults {
    BusFaults bus;
    payments::infrastructure::SimulatedGatewayOptions gateway;   ///< gateway "a", preferred
    payments::infrastructure::SimulatedGatewayOptions gateway_b; ///< gateway "b"
    payments::application::BreakerOptions breaker;               ///< each gateway's circuit

    static Faults draw(std::uint64_t seed);
};

/// Faults seen at the gateway, by kind.
struct GatewayFaultCounts {
    std::uint64_t declined = 0, transient = 0, unknown_outcome = 0, lost_responses = 0;
    std::uint64_t late_answers = 0;  ///< answers that came after the timeout, and were used
    std::uint64_t late_bookings = 0; ///< charges booked after the call went unanswered
    std::uint64_t mismatches = 0;    ///< charges of another amount than asked
    std::uint64_t lookups = 0;       ///< look-ups of unknown outcomes
};

/// What one seed did.
struct Outcome {
    std::uint64_t seed = 0;
    std::uint64_t trace_hash = 0;        ///< FNV-1a of every delivered event, in order
    std::vector<std::string> violations; ///< empty when every invariant held
    BusFaultCounts bus_faults;
    GatewayFaultCounts gateway_faults;
    std::uint64_t dead_letters_replayed = 0;
    std::uint64_t deliveries = 0;
    std::uint64_t steps = 0;
    payments::domain::Duration simulated{};
    int paid = 0, failed = 0;
    int needs_review = 0; ///< invoices left to an operator (amount mismatches, unresolved answers)
    std::uint64_t circuits_opened = 0;  ///< circuit transitions to open, both gateways
    std::uint64_t charged_at_b = 0;     ///< charges taken by the second gateway
};

/// Runs one seed: workload with faults, then a fault-free liveness phase.
Outcome run(std::uint64_t seed, Config const& config = {}, bool verbose = false);

/// The command that replays a seed.
std::string replay_command(std::uint64_t seed);

} // namespace sim
