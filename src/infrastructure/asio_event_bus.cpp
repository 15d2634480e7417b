#include <payments/infrastructure/asio_event_bus.hpp>

#include <boost/asio/post.hpp>
#include <boost/signals2/signal.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>

namespace payments::infrastructure {

using application::Subscription;
using domain::Event;
using domain::Timestamp;

namespace {

struct HandlerFailure {
    std::uint64_t subscriber_id;
    std::string subscriber;
    std::string error;
};

// What one signal invocation carries: the event, the one subscriber it is for
// (0: everybody), and where the slots report what they threw.
struct Delivery {
    Event const* event;
    std::uint64_t target;
    std::vector<HandlerFailure>* failures;
    bool matched = false;
};

using Signal = boost::signals2::signal<void(Delivery&)>;

struct Item {
    Event event;
    std::uint64_t target = 0;
};

// A FIFO of one group of invoices, drained by at most one task at a time.
struct Lane {
    std::mutex mutex;
    std::vector<Item> queue; // Owned by: mutex
    bool active = false;     // Owned by: mutex; a drain task is posted or running
};

struct ConnectionHandle final : Subscription::Handle {
    explicit ConnectionHandle(boost::signals2::connection c) : connection(std::move(c)) {}
    boost::signals2::scoped_connection connection;
};

} // namespace

struct AsioEventBus::Impl : std::enable_shared_from_this<Impl> {
    Impl(boost::asio::any_io_executor ex, application::Scheduler& s, application::Clock const& c,
         application::Logger& l, BusOptions o)
        : executor(std::move(ex)), scheduler(s), clock(c), logger(l), options(o),
          lanes(std::make_unique<Lane[]>(o.lanes)) {}

    Lane& lane_for(Event const& event) {
        return lanes[std::hash<domain::InvoiceId>{}(domain::envelope_of(event).invoice_id) % options.lanes];
    }

    void enqueue(Item item) {
        Lane& lane = lane_for(item.event);
        outstanding.fetch_add(1, std::memory_order_relaxed);
        bool start = false;
        {
            std::lock_guard lock(lane.mutex);
            lane.queue.push_back(std::move(item));
            start = !std::exchange(lane.active, true);
        }
        if (start) post_drain(lane);
    }

    void post_drain(Lane& lane) {
        boost::asio::post(executor, [self = shared_from_this(), &lane] { self->drain_lane(lane); });
    }

    // Delivers what the lane holds now, then yields the thread: a busy lane
    // re-posts itself instead of starving the others.
    void drain_lane(Lane& lane) {
        std::vector<Item> batch;
        {
            std::lock_guard lock(lane.mutex);
            batch.swap(lane.queue);
        }
        for (Item const& item : batch) deliver(item);
        bool more = false;
        {
            std::lock_guard lock(lane.mutex);
            more = !lane.queue.empty();
            lane.active = more;
        }
        if (more) post_drain(lane);
        finished(batch.size());
    }

    void finished(std::size_t n) {
        if (outstanding.fetch_sub(n, std::memory_order_acq_rel) == n) {
            std::lock_guard lock(idle_mutex);
            idle.notify_all();
        }
    }

    void deliver(Item const& item) {
        Signal& signal = signals[item.event.index()];
        std::vector<HandlerFailure> failures;
        Delivery delivery{&item.event, item.target, &failures};
        signal(delivery);
        delivered.fetch_add(1, std::memory_order_relaxed);
        for (HandlerFailure& failure : failures) redeliver(signal, item.event, std::move(failure));
    }

    // Immediate, bounded redelivery to the one subscriber that threw.
    void redeliver(Signal& signal, Event const& event, HandlerFailure failure) {
        int attempts = 1;
        for (;;) {
            handler_failures.fetch_add(1, std::memory_order_relaxed);
            logger.warn("event handler threw", {{"subscriber", failure.subscriber},
                                                {"event", domain::event_name(event)},
                                                {"event_id", domain::envelope_of(event).id.str()},
                                                {"attempt", attempts},
                                                {"error", failure.error}});
            if (attempts >= options.delivery_attempts) break;
            ++attempts;
            std::vector<HandlerFailure> again;
            Delivery delivery{&event, failure.subscriber_id, &again};
            signal(delivery);
            if (!delivery.matched || again.empty()) return; // unsubscribed meanwhile, or it worked
            failure = std::move(again.front());
        }
        logger.error("event dead-lettered", {{"subscriber", failure.subscriber},
                                             {"event", domain::event_name(event)},
                                             {"event_id", domain::envelope_of(event).id.str()},
                                             {"invoice_id", domain::envelope_of(event).invoice_id.str()}});
        dead_lettered.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(dead_mutex);
        dead.push_back(DeadLetter{event, failure.subscriber_id, std::move(failure.subscriber),
                                  std::move(failure.error), attempts, clock.now()});
    }

    // Asks the scheduler for one wake-up, at the earliest scheduled event.
    void arm_locked() {
        if (scheduled.empty() || stopped.load()) return;
        Timestamp const earliest = scheduled.begin()->first;
        if (wakeup && wakeup->at <= earliest) return;
        if (wakeup) scheduler.cancel(*wakeup);
        std::uint64_t const generation = ++wake_generation;
        wakeup = scheduler.call_at(earliest, [weak = weak_from_this(), generation] {
            if (auto self = weak.lock()) self->wake(generation);
        });
    }

    void wake(std::uint64_t generation) {
        std::lock_guard lock(schedule_mutex);
        if (generation == wake_generation) wakeup.reset();
        if (stopped.load()) return;
        Timestamp const now = clock.now();
        // Queued under the lock, so that events due together keep their order.
        while (!scheduled.empty() && scheduled.begin()->first <= now) {
            published.fetch_add(1, std::memory_order_relaxed);
            enqueue(Item{std::move(scheduled.begin()->second)});
            scheduled.erase(scheduled.begin());
        }
        arm_locked();
    }

    boost::asio::any_io_executor executor;
    application::Scheduler& scheduler;
    application::Clock const& clock;
    application::Logger& logger;
    BusOptions options;
    std::unique_ptr<Lane[]> lanes;
    std::array<Signal, domain::event_kinds> signals; // thread-safe by themselves
    std::atomic<std::uint64_t> next_subscriber{1};
    std::atomic<bool> stopped{false};

    std::atomic<std::uint64_t> published{0}, delivered{0}, handler_failures{0}, dead_lettered{0}, rejected{0},
        scheduled_discarded{0};
    std::atomic<std::size_t> outstanding{0}; // deliveries queued or running
    std::mutex idle_mutex;
    std::condition_variable idle;

    std::mutex schedule_mutex;
    std::multimap<Timestamp, Event> scheduled;    // Owned by: schedule_mutex
    std::optional<application::TimerId> wakeup;   // Owned by: schedule_mutex
    std::uint64_t wake_generation = 0;            // Owned by: schedule_mutex

    mutable std::mutex dead_mutex;
    std::vector<DeadLetter> dead; // Owned by: dead_mutex
};

AsioEventBus::AsioEventBus(boost::asio::any_io_executor executor, application::Scheduler& scheduler,
                           application::Clock const& clock, application::Logger& logger, BusOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), scheduler, clock, logger,
                                   BusOptions{std::max<std::size_t>(options.lanes, 1),
                                              std::max(options.delivery_attempts, 1)})) {}

AsioEventBus::~AsioEventBus() { stop(); }

bool AsioEventBus::publish(Event event) {
    if (impl_->stopped.load()) {
        impl_->rejected.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    impl_->published.fetch_add(1, std::memory_order_relaxed);
    impl_->enqueue(Item{std::move(event)});
    return true;
}

bool AsioEventBus::schedule(Event event, Timestamp at) {
    std::lock_guard lock(impl_->schedule_mutex);
    if (impl_->stopped.load()) {
        impl_->rejected.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    impl_->scheduled.emplace(at, std::move(event));
    impl_->arm_locked();
    return true;
}

Subscription AsioEventBus::subscribe_kind(std::size_t kind, std::string name,
                                          std::function<void(Event const&)> handler) {
    BOOST_ASSERT(kind < domain::event_kinds);
    std::uint64_t const id = impl_->next_subscriber.fetch_add(1);
    auto connection = impl_->signals[kind].connect(
        [id, name = std::move(name), handler = std::move(handler)](Delivery& delivery) {
            if (delivery.target != 0 && delivery.target != id) return;
            delivery.matched = true;
            // Nothing throws across the bus: a failure becomes a value it can retry.
            try {
                handler(*delivery.event);
            } catch (std::exception const& e) {
                delivery.failures->push_back({id, name, e.what()});
            } catch (...) {
                delivery.failures->push_back({id, name, "unknown exception"});
            }
        });
    return Subscription(std::make_unique<ConnectionHandle>(std::move(connection)));
}

bool AsioEventBus::drain(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(impl_->idle_mutex);
    return impl_->idle.wait_until(lock, deadline, [this] { return impl_->outstanding.load() == 0; });
}

std::vector<ScheduledEvent> AsioEventBus::stop() {
    std::lock_guard lock(impl_->schedule_mutex);
    impl_->stopped.store(true);
    if (impl_->wakeup) impl_->scheduler.cancel(*impl_->wakeup);
    impl_->wakeup.reset();
    std::vector<ScheduledEvent> discarded;
    discarded.reserve(impl_->scheduled.size());
    for (auto& [at, event] : impl_->scheduled) discarded.push_back({at, std::move(event)});
    impl_->scheduled.clear();
    impl_->scheduled_discarded.fetch_add(discarded.size());
    return discarded;
}

BusStats AsioEventBus::stats() const {
    BusStats s;
    s.published = impl_->published.load();
    s.delivered = impl_->delivered.load();
    s.handler_failures = impl_->handler_failures.load();
    s.dead_lettered = impl_->dead_lettered.load();
    s.rejected = impl_->rejected.load();
    s.scheduled_discarded = impl_->scheduled_discarded.load();
    s.queue_depth = impl_->outstanding.load();
    std::lock_guard lock(impl_->schedule_mutex);
    s.scheduled_pending = impl_->scheduled.size();
    return s;
}

std::vector<DeadLetter> AsioEventBus::dead_letters() const {
    std::lock_guard lock(impl_->dead_mutex);
    return impl_->dead;
}

std::size_t AsioEventBus::replay_dead_letters() {
    std::vector<DeadLetter> letters;
    {
        std::lock_guard lock(impl_->dead_mutex);
        letters.swap(impl_->dead);
    }
    for (DeadLetter& letter : letters) impl_->enqueue(Item{std::move(letter.event), letter.subscriber_id});
    return letters.size();
}

} // namespace payments::infrastructure
