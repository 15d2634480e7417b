#pragma once

#include <payments/application/event_bus.hpp>
#include <payments/application/store.hpp>

#include <cstddef>

namespace payments::application {

/// The outbox's relay: records in the store each event that reached its
/// subscribers, and at start publishes again what an earlier run committed
/// but did not deliver, and re-arms its scheduled events.
///
/// An event is marked delivered once every subscriber handled it
/// (EventBus::subscribe_delivered); one a subscriber dead-lettered stays in
/// the outbox and is published again at the next start. Handlers must be
/// idempotent: after a crash an event may be delivered again.
class OutboxRelay {
public:
    /// Subscribes to every kind of event on `bus`.
    OutboxRelay(Store& store, EventBus& bus);

    /// What restart() found.
    struct Restarted {
        std::size_t republished = 0; ///< undelivered events published again
        std::size_t rearmed = 0;     ///< scheduled events handed to the bus again
    };

    /// Publishes the undelivered events and re-arms the scheduled ones (the
    /// bus releases those already due in its bounded batches).
    Restarted restart();

private:
    Store& store_;
    EventBus& bus_;
    Subscription subscription_;
};

} // namespace payments::application
