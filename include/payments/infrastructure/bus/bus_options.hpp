#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <thread>

namespace payments::infrastructure {

/// How the Asio event bus spreads deliveries over its executor. Apart from
/// Asio so that EngineOptions can hold it without pulling Asio in.
struct BusOptions {
    /// Invoices hash onto this many lanes; a lane delivers one event at a time,
    /// in order. More lanes, more parallelism across invoices.
    std::size_t lanes = 64;
    /// Tries a throwing handler gets for one event before it is dead-lettered.
    int delivery_attempts = 3;
    /// Delivery tasks at most on the executor at once: each empties ready lanes
    /// one after another, so one post delivers many events. Set it to the
    /// executor's thread count.
    std::size_t delivery_tasks = std::max(1u, std::thread::hardware_concurrency());
    /// How long a lane whose next event a delivery filter answered
    /// Delivery::later stays parked before the filter is asked again (the
    /// outbox's filter: until the store's next renewal of its liveness).
    std::chrono::milliseconds later_retry{100};
};

} // namespace payments::infrastructure
