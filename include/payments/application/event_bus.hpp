#pragma once

#include <payments/domain/events.hpp>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>

namespace payments::application {

/// A live subscription; destroying it (or reset()) unsubscribes. A handler
/// already running on another thread finishes, so a handler must not touch an
/// object that may be destroyed without first stopping the bus.
class Subscription {
public:
    /// What an implementation keeps alive for the subscription's lifetime.
    struct Handle {
        virtual ~Handle() = default;
    };

    Subscription() = default;
    explicit Subscription(std::unique_ptr<Handle> handle) : handle_(std::move(handle)) {}

    void reset() noexcept { handle_.reset(); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    std::unique_ptr<Handle> handle_;
};

/// What a delivery filter (EventBus::add_delivery_filter()) says of an event.
enum class Delivery {
    deliver, ///< to its subscribers now
    drop,    ///< to none of them, ever (another process delivers it)
    later,   ///< not yet: kept, in order, and asked about again a little later
};

/// Publishes domain events to subscribers, asynchronously. Events of one
/// invoice are handled in publication order, one at a time.
class EventBus {
public:
    virtual ~EventBus() = default;

    /// Queues the event for delivery and returns at once; false once stopped.
    virtual bool publish(domain::Event event) = 0;

    /// Publishes the event at `at` (the Clock's time); false once stopped.
    virtual bool schedule(domain::Event event, domain::Timestamp at) = 0;

    /// Calls `handler(E const&)` for every event of type E. The name appears
    /// in logs and dead letters.
    template <class E, class F>
    [[nodiscard]] Subscription subscribe(std::string name, F handler) {
        return subscribe_kind(domain::event_index<E>(), std::move(name),
                              [handler = std::move(handler)](domain::Event const& event) {
                                  handler(std::get<E>(event));
                              });
    }

    /// Calls `handler(domain::Event const&)` for every event of every kind, in
    /// each invoice's publication order; one Subscription covers them all.
    /// Print an event with <payments/fmt.hpp>: `fmt::print("{}\n", event)`.
    [[nodiscard]] Subscription subscribe_all(std::string name, std::function<void(domain::Event const&)> handler);

    /// Calls `handler(domain::Event const&)` once per event, after every
    /// subscriber of the event handled it, and not at all if one of them gave
    /// up on it (a dead letter): what the transactional outbox needs to record
    /// an event as delivered. The default implementation cannot tell dead
    /// letters and subscribes `handler` to every kind: subscribe it last.
    /// AsioEventBus: removing the subscription waits for a call of `handler`
    /// under way (never remove it from inside that call), and none starts after.
    [[nodiscard]] virtual Subscription subscribe_delivered(std::string name,
                                                           std::function<void(domain::Event const&)> handler);

    /// Events published and not yet delivered (a producer that can wait,
    /// such as a take-over, holds back while it is high); 0 when unknown.
    virtual std::size_t backlog() const { return 0; }

    /// Scheduled events not yet due (a producer that can wait, such as the
    /// outbox relay, leaves the rest in the store while it is high); 0 when unknown.
    virtual std::size_t scheduled_backlog() const { return 0; }

    /// Asks `filter(event)` just before each event (published, or scheduled
    /// and now due) reaches its subscribers: delivered when every filter says
    /// Delivery::deliver, dropped (reaches none of them) when one says
    /// Delivery::drop, otherwise kept back with the events queued behind it on
    /// its lane and asked again a little later (Delivery::later). Several
    /// filters may be added; the Subscription removes its own, and once it is
    /// destroyed that filter is neither running nor called again. Every
    /// active filter is asked about every event (drop still wins), so a filter
    /// may keep bookkeeping per event. Filters are called concurrently from
    /// several delivery threads: they must be quick, must not block, and must
    /// not remove a filter from inside a call (removal waits for running
    /// calls). A filter that throws counts as Delivery::later: the event is
    /// kept and asked about again. The default implementation ignores filters,
    /// so a bus that does not override this gives the outbox relay no
    /// ownership check.
    [[nodiscard]] virtual Subscription add_delivery_filter(std::function<Delivery(domain::Event const&)> /*filter*/) {
        return {};
    }

    /// The untyped form of subscribe(): `kind` is the index in domain::Event.
    [[nodiscard]] virtual Subscription subscribe_kind(std::size_t kind, std::string name,
                                                      std::function<void(domain::Event const&)> handler) = 0;
};

} // namespace payments::application
