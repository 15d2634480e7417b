#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/event_bus.hpp>
#include <payments/application/idempotency_store.hpp>
#include <payments/application/logger.hpp>
#include <payments/application/metrics.hpp>
#include <payments/application/gateways.hpp>
#include <payments/application/scheduler.hpp>
#include <payments/application/store.hpp>
#include <payments/domain/invoice.hpp>
#include <payments/domain/random.hpp>

#include <functional>
#include <string_view>

namespace payments::application {

/// Everything the use cases talk to. The referenced objects outlive the use
/// cases that hold this.
struct Ports {
    Clock const& clock;
    domain::Random& random;
    Store& store;
    IdempotencyStore& idempotency;
    EventBus& bus;
    Scheduler& scheduler;
    /// The gateways in order of preference (`Gateways(gateway)` for one).
    Gateways& gateways;
    Metrics& metrics;
    Logger& logger;
    /// Unique to this wiring in this process run (1-32 characters of
    /// A-Z a-z 0-9 _ -); every gateway key carries it, so that keys never
    /// repeat across processes and runs, even with a fixed seed (the seed
    /// alone would send the same keys again). Empty: 80 bits drawn from
    /// std::random_device once per process, and a process-wide count.
    std::string_view instance_id = {};
};

/// A new attempt's payment id (from `ports.random`), its gateway key
/// ("<payment id>.<instance id>", or "<payment id>.<process id>-<n>") and the
/// gateway that takes it (`route_new_attempt` after `last_attempt`, if any).
domain::NewAttempt new_attempt(Ports const& ports, domain::Payment const* last_attempt = nullptr);

/// Whether `gateway_key` was made by new_attempt() with these ports in this
/// process run (no earlier run can have sent it).
bool is_key_of_this_run(Ports const& ports, std::string_view gateway_key);

/// The metadata of a new event caused by the request `correlation_id`.
inline domain::EventMeta new_event_meta(Ports const& ports, domain::CorrelationId const& correlation_id) {
    return {domain::EventId::generate(ports.random), correlation_id, ports.clock.now()};
}

} // namespace payments::application
