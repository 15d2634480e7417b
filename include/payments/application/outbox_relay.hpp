#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/event_bus.hpp>
#include <payments/application/scheduler.hpp>
#include <payments/application/store.hpp>

#include <cstddef>
#include <memory>

namespace payments::application {

/// The outbox's relay: records in the store each event that reached its
/// subscribers, and at start publishes again what an earlier run committed
/// but did not deliver, and re-arms its scheduled events. On a store shared
/// by several processes it also takes over, while it runs, the outbox and the
/// scheduled events of a process that is gone (Store::take_over()): woken
/// by the store when one goes, and every `interval` in case a wake-up was lost.
///
/// An event is marked delivered once every subscriber handled it
/// (EventBus::subscribe_delivered); one a subscriber dead-lettered stays in
/// the outbox and is published again at the next start. Handlers must be
/// idempotent: after a crash an event may be delivered again.
class OutboxRelay {
public:
    /// Events and scheduled events a take-over round claims per store call.
    static constexpr std::size_t batch = 100;

    /// Subscribes to every kind of event on `bus`.
    OutboxRelay(Store& store, EventBus& bus);
    /// Stops watching the store; a round that is running finishes first.
    ~OutboxRelay();
    OutboxRelay(OutboxRelay const&) = delete;
    OutboxRelay& operator=(OutboxRelay const&) = delete;

    /// What restart() or a take-over round found.
    struct Restarted {
        std::size_t republished = 0; ///< undelivered events published again
        std::size_t rearmed = 0;     ///< scheduled events handed to the bus again
    };

    /// Publishes the undelivered events and re-arms the scheduled ones (the
    /// bus releases those already due in its bounded batches), then takes
    /// over what processes that are gone left (a shared store).
    Restarted restart();

    /// One take-over round: claims in batches what processes that are gone
    /// left, publishes the events and arms the scheduled events, until
    /// nothing is left or the bus refuses (it is stopping; what was claimed
    /// stays this process's in the store). Throws StorageFailure.
    Restarted take_over();

    /// A shared store: runs take_over() on `scheduler` whenever the store
    /// says work was left, and every `interval` besides. Nothing for a store
    /// used by one process. Call once.
    void watch(Scheduler& scheduler, Clock const& clock, domain::Duration interval);
    /// Stops watch(): no round starts after it returns.
    void stop();

private:
    struct Watch;
    Store& store_;
    EventBus& bus_;
    Subscription subscription_;
    std::shared_ptr<Watch> watch_;
};

} // namespace payments::application
