#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/event_bus.hpp>
#include <payments/application/logger.hpp>
#include <payments/application/scheduler.hpp>
#include <payments/infrastructure/bus/bus_options.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace payments::infrastructure {

/// An event a handler kept failing on.
struct DeadLetter {
    domain::Event event;
    std::uint64_t subscriber_id = 0;
    std::string subscriber;
    std::string error;
    int attempts = 0;
    domain::Timestamp at;
};

/// A scheduled event that stop() took back before it was due.
struct ScheduledEvent {
    domain::Timestamp at;
    domain::Event event;
};

/// Counters since construction; queue_depth and scheduled_pending are current values.
struct BusStats {
    std::uint64_t published = 0;
    std::uint64_t delivered = 0;
    std::uint64_t handler_failures = 0;
    std::uint64_t dead_lettered = 0;
    std::uint64_t rejected = 0; ///< publish/schedule after stop()
    std::uint64_t filtered = 0; ///< dropped by a delivery filter (add_delivery_filter())
    std::uint64_t held_back = 0; ///< times a delivery filter answered Delivery::later (its lane parked)
    std::uint64_t scheduled_discarded = 0;
    std::uint64_t queue_depth = 0;
    std::uint64_t scheduled_pending = 0;
};

/// The in-memory event bus: deliveries run on an Asio executor, fan out to
/// Boost.Signals2 subscribers, and keep per-invoice order on lanes.
///
/// - publish() never blocks on handlers; it queues on the invoice's lane.
/// - schedule() holds events in one ordered queue behind one Scheduler wake-up.
/// - A handler that throws is retried at once, up to delivery_attempts tries
///   (so the lane's order holds), then the event is dead-lettered for it alone.
/// - Shutdown: wait_idle() waits for queued and running deliveries (not for
///   scheduled ones); stop() refuses new events and hands back the scheduled
///   events not yet due, which are then never delivered.
class AsioEventBus final : public application::EventBus {
public:
    AsioEventBus(boost::asio::any_io_executor executor, application::Scheduler& scheduler,
                 application::Clock const& clock, application::Logger& logger, BusOptions options = {});
    /// Calls stop().
    ~AsioEventBus() override;

    bool publish(domain::Event event) override;
    bool schedule(domain::Event event, domain::Timestamp at) override;
    application::Subscription subscribe_kind(std::size_t kind, std::string name,
                                             std::function<void(domain::Event const&)> handler) override;
    /// Runs `handler` after an event's subscribers, unless one dead-lettered
    /// it; a dead letter's successful replay counts as handled.
    application::Subscription subscribe_delivered(std::string name,
                                                  std::function<void(domain::Event const&)> handler) override;
    /// Events queued on the lanes or being delivered (BusStats::queue_depth).
    std::size_t backlog() const override;
    /// Scheduled events not yet released to the lanes (BusStats::scheduled_pending).
    std::size_t scheduled_backlog() const override;
    /// Asked on the delivery task before any subscriber. An event a filter
    /// answers Delivery::later parks its lane (that event and those behind
    /// it, in order) for BusOptions::later_retry, then it is asked again;
    /// wait_idle() waits for parked lanes too.
    [[nodiscard]] application::Subscription
    add_delivery_filter(std::function<application::Delivery(domain::Event const&)> filter) override;

    /// Waits until no delivery is queued or running. Call it from outside the
    /// executor's threads; false at the deadline.
    bool wait_idle(std::chrono::steady_clock::time_point deadline);
    /// Stops accepting events; returns the scheduled events that will now never be delivered.
    std::vector<ScheduledEvent> stop();

    BusStats stats() const;
    std::vector<DeadLetter> dead_letters() const;
    /// Delivers every dead letter again, to its own subscriber; returns how many.
    std::size_t replay_dead_letters();

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace payments::infrastructure
