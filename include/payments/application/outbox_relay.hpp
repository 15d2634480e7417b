#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/event_bus.hpp>
#include <payments/application/scheduler.hpp>
#include <payments/application/store.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>

namespace payments::application {

/// The outbox's relay: records in the store each event that reached its
/// subscribers, and at start publishes again what an earlier run committed
/// but did not deliver, and re-arms its scheduled events, a page at a time
/// while the bus has room (the rest waits in the store). On a store shared
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
    /// The start and the take-over rounds hand the bus nothing more while it
    /// holds this many events not yet delivered (EventBus::backlog()).
    static constexpr std::size_t max_backlog = 1'000;
    /// Nor scheduled events while it holds this many not yet due
    /// (EventBus::scheduled_backlog()): the rest stay in the store.
    static constexpr std::size_t max_scheduled = 1'000;

    /// Subscribes to every kind of event on `bus`, and adds a delivery
    /// filter that asks Store::still_owns() (lost: dropped; doubtful: later).
    OutboxRelay(Store& store, EventBus& bus);
    /// Stops watching the store; a round that is running finishes first, and
    /// so do calls of its filter and its delivered hook (on a bus whose
    /// removals wait, as AsioEventBus's do): its store may go next. Events
    /// its filter held back are then delivered unfiltered and unmarked: stop
    /// the bus first when that matters.
    ~OutboxRelay();
    OutboxRelay(OutboxRelay const&) = delete;
    OutboxRelay& operator=(OutboxRelay const&) = delete;

    /// What restart() or a take-over round found.
    struct Restarted {
        std::size_t republished = 0; ///< undelivered events published again
        std::size_t rearmed = 0;     ///< scheduled events handed to the bus again
        bool more = false;           ///< take_over(): a whole batch was claimed, more may be left
        bool bus_full = false;       ///< stopped short: the bus held max_backlog events (or max_scheduled)
    };

    /// Publishes the undelivered events, then re-arms the scheduled ones (the
    /// bus releases those already due in its bounded batches), `batch` at a
    /// time from the store, while the bus holds fewer than `max_backlog`
    /// events and `max_scheduled` scheduled ones; watch()'s rounds go on with
    /// what is left (restarting() meanwhile). Only what the store held when
    /// it opened (Store::start_mark()): events and retries committed after
    /// are left to their use case. Then runs one take-over round (a shared
    /// store; watch() claims the rest). Throws StorageFailure.
    Restarted restart();

    /// True from restart() until it has handed the bus everything the store
    /// held (or the bus refused: it is stopping).
    bool restarting() const;

    /// True from restart() until it has handed the bus the outbox (the events
    /// an earlier run committed and did not deliver), what readiness waits
    /// for. Retries are re-armed after it, as the bus has room: one due in
    /// days holds nothing back (an attempt left due is recovery's, which the
    /// processor starts at once).
    bool republishing() const;

    /// One take-over round: claims the events of at most `batch` invoices
    /// and at most `batch` scheduled events that processes that are gone left, publishes the
    /// events and arms the scheduled events (a bus that refuses is stopping:
    /// what was claimed stays this process's in the store). Claims no events
    /// while the bus holds `max_backlog` events, and no scheduled events while
    /// it holds `max_scheduled` scheduled ones (review18 A-3: a gone process's
    /// retries wait in the store, not in this one's memory); one kind full
    /// does not hold the other back (review 21, F4). Throws StorageFailure.
    Restarted take_over();

    /// Goes on, in rounds on `scheduler`, with what restart() left. A shared
    /// store: then runs take_over() rounds whenever the store says work was
    /// left, and every `interval` besides. A round that handed over a whole
    /// batch posts the next behind the scheduler's other work, and one that
    /// found the bus full (or the store unreadable, at start) looks again a
    /// second later. Call once.
    void watch(Scheduler& scheduler, Clock const& clock, domain::Duration interval);
    /// Stops watch(): no round starts after it returns.
    void stop();

private:
    struct Watch;
    // At most `pages` of the start's pages (restart(): all the bus takes; a
    // round of watch(): one, so that the scheduler's timers run in between).
    Restarted resume_start(std::size_t pages);

    Store& store_;
    EventBus& bus_;
    // Where the start's pages are: the outbox's, then the scheduled events'.
    enum class Phase { events, scheduled, done };
    std::mutex start_mutex_;
    Phase phase_ = Phase::done;                       // Owned by: start_mutex_
    OutboxCursor events_from_;                        // Owned by: start_mutex_
    ScheduledCursor scheduled_from_;                  // Owned by: start_mutex_
    std::atomic<bool> restarting_{false};
    std::atomic<bool> republishing_{false};
    Subscription subscription_;
    Subscription filter_; // Store::still_owns() as the bus's delivery filter
    std::shared_ptr<Watch> watch_;
};

} // namespace payments::application
