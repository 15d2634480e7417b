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
    /// Events and scheduled events a take-over round claims at most.
    static constexpr std::size_t batch = 100;
    /// A take-over round claims nothing while the bus holds this many events
    /// not yet delivered (EventBus::backlog()).
    static constexpr std::size_t max_backlog = 1'000;

    /// Subscribes to every kind of event on `bus`, and adds a delivery
    /// filter that asks Store::still_owns() (lost: dropped; doubtful: later).
    OutboxRelay(Store& store, EventBus& bus);
    /// Stops watching the store; a round that is running finishes first.
    ~OutboxRelay();
    OutboxRelay(OutboxRelay const&) = delete;
    OutboxRelay& operator=(OutboxRelay const&) = delete;

    /// What restart() or a take-over round found.
    struct Restarted {
        std::size_t republished = 0; ///< undelivered events published again
        std::size_t rearmed = 0;     ///< scheduled events handed to the bus again
        bool more = false;           ///< take_over(): a whole batch was claimed, more may be left
        bool bus_full = false;       ///< take_over(): nothing claimed, the bus held max_backlog events
    };

    /// Publishes the undelivered events and re-arms the scheduled ones (the
    /// bus releases those already due in its bounded batches), then runs one
    /// take-over round (a shared store; watch() claims the rest).
    Restarted restart();

    /// One take-over round: claims the events of at most `batch` invoices
    /// and at most `batch` scheduled events that processes that are gone left, publishes the
    /// events and arms the scheduled events (a bus that refuses is stopping:
    /// what was claimed stays this process's in the store). Claims nothing
    /// while the bus holds `max_backlog` events. Throws StorageFailure.
    Restarted take_over();

    /// A shared store: runs take_over() rounds on `scheduler` whenever the
    /// store says work was left, and every `interval` besides; a round that
    /// claimed a whole batch posts the next behind the scheduler's other
    /// work, and one that found the bus full looks again a second later.
    /// Nothing for a store used by one process. Call once.
    void watch(Scheduler& scheduler, Clock const& clock, domain::Duration interval);
    /// Stops watch(): no round starts after it returns.
    void stop();

private:
    struct Watch;
    Store& store_;
    EventBus& bus_;
    Subscription subscription_;
    Subscription filter_; // Store::still_owns() as the bus's delivery filter
    std::shared_ptr<Watch> watch_;
};

} // namespace payments::application
