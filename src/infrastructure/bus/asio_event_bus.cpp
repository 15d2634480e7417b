#include <payments/infrastructure/bus/asio_event_bus.hpp>

#include "scheduled_events.hpp"

#include <boost/asio/post.hpp>
#include <boost/signals2/signal.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

namespace payments::infrastructure {

using application::Delivery;
using application::Subscription;
using domain::Event;
using domain::Timestamp;

namespace {

// A subscription as the bus sees it. The Signals2 slot stands for it; the
// flag lets a delivery already under way skip it once it is unsubscribed.
struct Subscriber {
    Subscriber(std::uint64_t i, std::string n, std::function<void(Event const&)> h)
        : id(i), name(std::move(n)), handler(std::move(h)) {}

    std::uint64_t id;
    std::string name;
    std::function<void(Event const&)> handler;
    std::atomic<bool> active{true};
    // Delivered hooks only: calls under way, which their handle's removal
    // waits for (the hook refers to a store that may go next: review 20, 10).
    std::atomic<int> running{0};
};

using SubscriberPtr = std::shared_ptr<Subscriber>;

// Who gets a batch: one emission of each kind's signal lists its live
// slots, so a batch pays for Signals2 once per kind instead of once per event.
using Roster = std::vector<SubscriberPtr>;
using Signal = boost::signals2::signal<void(Roster&)>;

struct Item {
    Item(Event&& e, std::uint64_t t) : event(std::move(e)), target(t) {}

    Event event;
    std::uint64_t target; // one subscriber only (a dead letter's replay); 0: everybody
};

// A lane queues events in segments of fixed capacity: a burst appends
// without moving what is queued (under the lock a delivery needs), and emptied
// segments are reused, so a steady lane does not allocate.
constexpr std::size_t segment_items = 32;
constexpr std::size_t spare_segments = 4; // kept per lane for reuse
constexpr std::size_t delivery_budget = 1024;  // events one delivery task delivers before yielding
constexpr std::size_t wake_batch = 1024;    // scheduled events released per wake-up
using Segment = std::vector<Item>;

// A FIFO of one group of invoices, delivered by at most one task at a time.
// Its own cache line: a publisher on one lane does not slow a delivery on the next.
struct alignas(64) Lane {
    std::mutex mutex;
    std::vector<Segment> queue;  // Owned by: mutex; full segments, then the one being filled
    std::vector<Segment> spare;  // Owned by: mutex; empty, with capacity
    bool active = false;         // Owned by: mutex; a delivery task is posted or running
    std::size_t pending = 0;     // Owned by: mutex; events queued or being delivered
    std::uint64_t published = 0; // Owned by: mutex
    // The delivery task holding the lane is asking the delivery filters
    // (remove_filter() waits for it to end); on the lane's own cache line.
    std::atomic<bool> filtering{false};
};

// One delivery filter; cleared when its Subscription goes, and not called after.
struct FilterEntry {
    explicit FilterEntry(std::function<Delivery(Event const&)> f) : filter(std::move(f)) {}
    std::function<Delivery(Event const&)> filter;
    std::atomic<bool> active{true};
};

using FilterPtr = std::shared_ptr<FilterEntry>;
using Filters = std::shared_ptr<std::vector<FilterPtr> const>; // copied on write, read once per batch

struct ConnectionHandle : Subscription::Handle {
    ConnectionHandle(SubscriberPtr s, boost::signals2::connection c)
        : subscriber(std::move(s)), connection(std::move(c)) {}
    ~ConnectionHandle() override { subscriber->active.store(false); }

    SubscriberPtr subscriber;
    boost::signals2::scoped_connection connection;
};

// A delivered hook's handle: its removal returns once no call of the hook is
// under way, and none starts after. Dekker under seq_cst, as filters: the
// hook's call raises `running` then reads `active`; the removal clears
// `active` then reads `running`.
struct HookHandle final : ConnectionHandle {
    using ConnectionHandle::ConnectionHandle;
    ~HookHandle() override {
        subscriber->active.store(false);
        while (subscriber->running.load() != 0) std::this_thread::yield();
    }
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

    // Counts live on the lane, under the lock publish takes anyway: no
    // shared atomic per event for the publishers and the delivery_tasks to fight over.
    // The event is moved once, into its place in the lane (events are large).
    void enqueue(Event&& event, std::uint64_t target = 0, bool count_published = true) {
        Lane& lane = lane_for(event);
        bool start = false;
        {
            std::lock_guard lock(lane.mutex);
            push_locked(lane, std::move(event), target);
            ++lane.pending;
            if (count_published) ++lane.published;
            start = !std::exchange(lane.active, true);
            // Counted before the lock is released: wait_idle() never sees zero
            // active lanes while this event is queued.
            if (start) active_lanes.fetch_add(1, std::memory_order_relaxed);
        }
        if (start) make_ready(lane);
    }

    static void push_locked(Lane& lane, Event&& event, std::uint64_t target) {
        if (lane.queue.empty() || lane.queue.back().size() == segment_items) {
            if (lane.spare.empty()) {
                lane.queue.emplace_back().reserve(segment_items);
            } else {
                lane.queue.push_back(std::move(lane.spare.back()));
                lane.spare.pop_back();
            }
        }
        lane.queue.back().emplace_back(std::move(event), target);
    }

    // Puts a lane that has events on the ready list, and posts a delivery task
    // unless enough are out: one post serves many lanes and many events.
    void make_ready(Lane& lane) {
        bool post = false;
        {
            std::lock_guard lock(ready_mutex);
            ready.push_back(&lane);
            post = delivery_tasks < options.delivery_tasks;
            if (post) ++delivery_tasks;
        }
        if (post) post_delivery();
    }

    void post_delivery() {
        boost::asio::post(executor, [self = shared_from_this()] { self->deliver_ready(); });
    }

    // Drains ready lanes until none is left, or re-posts itself after a
    // budget of events, so that other work on the executor gets its turn.
    void deliver_ready(bool lingered = false) {
        std::size_t delivered_here = 0;
        for (;;) {
            Lane* lane = nullptr;
            {
                std::lock_guard lock(ready_mutex);
                if (ready.empty()) {
                    // Having worked, yield once before leaving: a publisher
                    // mid-burst then finds this task still out and posts none.
                    if (delivered_here > 0 && !lingered) {
                        boost::asio::post(executor, [self = shared_from_this()] { self->deliver_ready(true); });
                        return;
                    }
                    --delivery_tasks;
                    return;
                }
                lane = ready.front();
                ready.pop_front();
            }
            delivered_here += deliver_lane(*lane);
            if (delivered_here >= delivery_budget) {
                post_delivery();
                return;
            }
        }
    }

    // Delivers what the lane holds now; the lane goes back on the ready list
    // if more came meanwhile, or is parked when a filter said "later". Returns
    // how many events it delivered or dropped.
    std::size_t deliver_lane(Lane& lane) {
        std::vector<Segment> batch;
        {
            std::lock_guard lock(lane.mutex);
            batch.swap(lane.queue);
        }
        std::array<Roster, domain::event_kinds> rosters;
        std::array<bool, domain::event_kinds> listed{};
        Roster delivered_hooks;
        delivered_signal(delivered_hooks);
        Filters const asked = delivery_filters();
        std::size_t count = 0, dropped = 0;
        std::optional<std::pair<std::size_t, std::size_t>> parked; // (segment, item) held back, with what follows
        for (std::size_t s = 0; s < batch.size() && !parked; ++s) {
            for (std::size_t i = 0; i < batch[s].size(); ++i) {
                Item const& item = batch[s][i];
                Delivery const verdict = asked ? ask(lane, *asked, item.event) : Delivery::deliver;
                if (verdict == Delivery::later) {
                    parked.emplace(s, i);
                    break;
                }
                ++count;
                if (verdict == Delivery::drop) {
                    ++dropped;
                    continue;
                }
                std::size_t const kind = item.event.index();
                if (!std::exchange(listed[kind], true)) signals[kind](rosters[kind]);
                bool handled = true;
                for (SubscriberPtr const& subscriber : rosters[kind])
                    if (item.target == 0 || item.target == subscriber->id)
                        handled = deliver(*subscriber, item.event) && handled;
                if (handled)
                    for (SubscriberPtr const& hook : delivered_hooks) {
                        hook->running.fetch_add(1);
                        if (hook->active.load()) deliver(*hook, item.event);
                        hook->running.fetch_sub(1);
                    }
            }
        }
        delivered.fetch_add(count - dropped, std::memory_order_relaxed);
        filtered.fetch_add(dropped, std::memory_order_relaxed);
        // Destroyed outside the lane's lock: the delivered segments' events,
        // and the head of the segment held back.
        std::size_t const done = parked ? parked->first : batch.size();
        for (std::size_t s = 0; s < done; ++s) batch[s].clear();
        if (parked) {
            held_back.fetch_add(1, std::memory_order_relaxed);
            Segment& first = batch[parked->first];
            first.erase(first.begin(), first.begin() + static_cast<std::ptrdiff_t>(parked->second));
        }
        bool more = false;
        {
            std::lock_guard lock(lane.mutex);
            lane.pending -= count;
            if (parked) {
                // What was held back goes in front of what came meanwhile: the lane's order holds.
                std::vector<Segment> rest;
                rest.reserve(batch.size() - done + lane.queue.size());
                for (std::size_t s = done; s < batch.size(); ++s) rest.push_back(std::move(batch[s]));
                for (Segment& segment : lane.queue) rest.push_back(std::move(segment));
                lane.queue = std::move(rest);
                batch.resize(done);
            }
            more = !lane.queue.empty();
            lane.active = more;
            while (!batch.empty() && lane.spare.size() < spare_segments) {
                lane.spare.push_back(std::move(batch.back()));
                batch.pop_back();
            }
        }
        if (parked) {
            park(lane); // still active: counted in active_lanes until it empties
        } else if (more) {
            std::lock_guard lock(ready_mutex);
            ready.push_back(&lane);
        } else if (active_lanes.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            std::lock_guard lock(idle_mutex);
            idle.notify_all();
        }
        return count;
    }

    // Every active filter's answer for the event: drop beats later beats deliver.
    // Every active filter is asked, even after a drop, so that each sees every
    // event it may keep bookkeeping for. A filter that throws answers later:
    // the event is kept and asked about again, and the lane goes on.
    Delivery ask(Lane& lane, std::vector<FilterPtr> const& asked, Event const& event) {
        Delivery verdict = Delivery::deliver;
        // Set before a filter is found active, cleared after its call (also when
        // it throws): a filter removed meanwhile is either skipped or waited for
        // (remove_filter()).
        lane.filtering.store(true);
        struct Cleared {
            std::atomic<bool>& flag;
            ~Cleared() { flag.store(false, std::memory_order_release); }
        } const cleared{lane.filtering};
        for (FilterPtr const& entry : asked) {
            if (!entry->active.load()) continue;
            Delivery answer = Delivery::later;
            std::string error;
            try {
                answer = entry->filter(event);
            } catch (std::exception const& e) {
                error = e.what();
            } catch (...) {
                error = "unknown exception";
            }
            if (!error.empty()) {
                logger.warn("delivery filter threw; the event is held back",
                            {{"event", domain::event_name(event)},
                             {"event_id", domain::envelope_of(event).id.str()},
                             {"error", error}});
            }
            if (answer == Delivery::drop) verdict = Delivery::drop;
            else if (answer == Delivery::later && verdict != Delivery::drop) verdict = Delivery::later;
        }
        return verdict;
    }

    // A lane held back by a filter is made ready again after later_retry;
    // one wake-up serves every lane parked meanwhile.
    void park(Lane& lane) {
        {
            std::lock_guard lock(parked_mutex);
            parked_lanes.push_back(&lane);
            if (std::exchange(unpark_armed, true)) return;
        }
        scheduler.call_at(clock.now() + options.later_retry, [weak = weak_from_this()] {
            if (auto self = weak.lock()) self->unpark();
        });
    }

    void unpark() {
        std::vector<Lane*> lanes_back;
        {
            std::lock_guard lock(parked_mutex);
            lanes_back.swap(parked_lanes);
            unpark_armed = false;
        }
        for (Lane* lane : lanes_back) make_ready(*lane);
    }

    // Removes a filter: once this returns, it is not running and is never called again.
    void remove_filter(FilterPtr const& entry) {
        entry->active.store(false);
        {
            std::lock_guard guard(filter_mutex);
            if (filters) {
                auto next = std::make_shared<std::vector<FilterPtr>>(*filters);
                std::erase(*next, entry);
                filters = next->empty() ? nullptr : Filters(std::move(next));
            }
        }
        for (std::size_t i = 0; i < options.lanes; ++i)
            while (lanes[i].filtering.load()) std::this_thread::yield();
    }

    // One subscriber, one event: a handler that throws is retried at once (so
    // the lane's order holds), up to delivery_attempts tries, then dead-lettered.
    // False when it was dead-lettered.
    bool deliver(Subscriber& subscriber, Event const& event) {
        for (int attempt = 1;; ++attempt) {
            if (!subscriber.active.load(std::memory_order_relaxed)) return true; // unsubscribed meanwhile
            std::string error;
            // Nothing throws across the bus: a failure becomes a value it can retry.
            try {
                subscriber.handler(event);
                return true;
            } catch (std::exception const& e) {
                error = e.what();
            } catch (...) {
                error = "unknown exception";
            }
            handler_failures.fetch_add(1, std::memory_order_relaxed);
            logger.warn("event handler threw", {{"subscriber", subscriber.name},
                                                {"event", domain::event_name(event)},
                                                {"event_id", domain::envelope_of(event).id.str()},
                                                {"attempt", attempt},
                                                {"error", error}});
            if (attempt >= options.delivery_attempts) {
                dead_letter(subscriber, event, std::move(error), attempt);
                return false;
            }
        }
    }

    void dead_letter(Subscriber const& subscriber, Event const& event, std::string error, int attempts) {
        logger.error("event dead-lettered", {{"subscriber", subscriber.name},
                                             {"event", domain::event_name(event)},
                                             {"event_id", domain::envelope_of(event).id.str()},
                                             {"invoice_id", domain::envelope_of(event).invoice_id.str()}});
        dead_lettered.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard lock(dead_mutex);
        dead.push_back(DeadLetter{event, subscriber.id, subscriber.name, std::move(error), attempts, clock.now()});
    }

    // Asks the scheduler for one wake-up, at the earliest scheduled event.
    void arm_locked() {
        auto const due = scheduled.earliest();
        if (!due || stopped.load()) return;
        Timestamp const earliest = *due;
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
        // Queued under the lock, so that events due together keep their order;
        // a bounded batch per wake-up, so that a million retries due at once
        // (after an outage) flow through the lanes instead of flooding them.
        scheduled.pop_due(now, wake_batch, [this](Event event) { enqueue(std::move(event)); });
        arm_locked();
    }

    boost::asio::any_io_executor executor;
    application::Scheduler& scheduler;
    application::Clock const& clock;
    application::Logger& logger;
    BusOptions options;
    std::unique_ptr<Lane[]> lanes;
    std::array<Signal, domain::event_kinds> signals; // thread-safe by themselves
    Signal delivered_signal; // subscribe_delivered's hooks, after every subscriber handled an event
    std::mutex filter_mutex;
    Filters filters; // Owned by: filter_mutex; read once per lane's batch; null when there is none
    Filters delivery_filters() {
        std::lock_guard guard(filter_mutex);
        return filters;
    }
    std::mutex parked_mutex;
    std::vector<Lane*> parked_lanes; // Owned by: parked_mutex; held back by a filter, waiting for unpark()
    bool unpark_armed = false;       // Owned by: parked_mutex
    std::atomic<std::uint64_t> next_subscriber{1};
    std::atomic<bool> stopped{false};

    std::atomic<std::uint64_t> delivered{0}, handler_failures{0}, dead_lettered{0}, rejected{0}, filtered{0},
        held_back{0}, scheduled_discarded{0};
    std::atomic<std::size_t> active_lanes{0}; // lanes with deliveries queued or running
    std::mutex ready_mutex;
    std::deque<Lane*> ready; // Owned by: ready_mutex; active lanes that no delivery task holds
    std::size_t delivery_tasks = 0;  // Owned by: ready_mutex; delivery tasks posted or running
    std::mutex idle_mutex;
    std::condition_variable idle;

    std::mutex schedule_mutex;
    ScheduledEvents scheduled;                    // Owned by: schedule_mutex
    std::optional<application::TimerId> wakeup;   // Owned by: schedule_mutex
    std::uint64_t wake_generation = 0;            // Owned by: schedule_mutex

    mutable std::mutex dead_mutex;
    std::vector<DeadLetter> dead; // Owned by: dead_mutex
};

namespace {
// The caller's options, every field kept, each brought into its usable range
// (a later_retry of 0 would spin the scheduler while a store is doubtful).
BusOptions clamped(BusOptions options) {
    options.lanes = std::max<std::size_t>(options.lanes, 1);
    options.delivery_attempts = std::max(options.delivery_attempts, 1);
    options.delivery_tasks = std::max<std::size_t>(options.delivery_tasks, 1);
    options.later_retry = std::max(options.later_retry, decltype(options.later_retry){std::chrono::milliseconds(1)});
    return options;
}
} // namespace

AsioEventBus::AsioEventBus(boost::asio::any_io_executor executor, application::Scheduler& scheduler,
                           application::Clock const& clock, application::Logger& logger, BusOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), scheduler, clock, logger,
                                   clamped(options))) {}

AsioEventBus::~AsioEventBus() { stop(); }

bool AsioEventBus::publish(Event event) {
    if (impl_->stopped.load()) {
        impl_->rejected.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    impl_->enqueue(std::move(event));
    return true;
}

bool AsioEventBus::schedule(Event event, Timestamp at) {
    std::lock_guard lock(impl_->schedule_mutex);
    if (impl_->stopped.load()) {
        impl_->rejected.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    impl_->scheduled.push(at, event);
    impl_->arm_locked();
    return true;
}

Subscription AsioEventBus::subscribe_kind(std::size_t kind, std::string name,
                                          std::function<void(Event const&)> handler) {
    BOOST_ASSERT(kind < domain::event_kinds);
    auto subscriber = std::make_shared<Subscriber>(impl_->next_subscriber.fetch_add(1), std::move(name),
                                                   std::move(handler));
    auto connection = impl_->signals[kind].connect([subscriber](Roster& roster) { roster.push_back(subscriber); });
    return Subscription(std::make_unique<ConnectionHandle>(std::move(subscriber), std::move(connection)));
}

Subscription AsioEventBus::subscribe_delivered(std::string name, std::function<void(Event const&)> handler) {
    auto hook = std::make_shared<Subscriber>(impl_->next_subscriber.fetch_add(1), std::move(name), std::move(handler));
    auto connection = impl_->delivered_signal.connect([hook](Roster& roster) { roster.push_back(hook); });
    return Subscription(std::make_unique<HookHandle>(std::move(hook), std::move(connection)));
}

Subscription AsioEventBus::add_delivery_filter(std::function<Delivery(Event const&)> filter) {
    BOOST_ASSERT(filter);
    auto entry = std::make_shared<FilterEntry>(std::move(filter));
    {
        std::lock_guard guard(impl_->filter_mutex);
        auto next = impl_->filters ? std::make_shared<std::vector<FilterPtr>>(*impl_->filters)
                                   : std::make_shared<std::vector<FilterPtr>>();
        next->push_back(entry);
        impl_->filters = std::move(next);
    }
    // Removes its filter from the bus, if the bus is still there.
    struct FilterHandle final : Subscription::Handle {
        FilterHandle(std::weak_ptr<Impl> b, FilterPtr e) : bus(std::move(b)), entry(std::move(e)) {}
        ~FilterHandle() override {
            if (auto impl = bus.lock()) impl->remove_filter(entry);
            else entry->active.store(false);
        }

        std::weak_ptr<Impl> bus;
        FilterPtr entry;
    };
    return Subscription(std::make_unique<FilterHandle>(impl_, std::move(entry)));
}

bool AsioEventBus::wait_idle(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(impl_->idle_mutex);
    return impl_->idle.wait_until(lock, deadline, [this] { return impl_->active_lanes.load() == 0; });
}

std::vector<ScheduledEvent> AsioEventBus::stop() {
    std::lock_guard lock(impl_->schedule_mutex);
    impl_->stopped.store(true);
    if (impl_->wakeup) impl_->scheduler.cancel(*impl_->wakeup);
    impl_->wakeup.reset();
    std::vector<ScheduledEvent> discarded;
    auto all = impl_->scheduled.take_all();
    discarded.reserve(all.size());
    for (auto& [at, event] : all) discarded.push_back({at, std::move(event)});
    impl_->scheduled_discarded.fetch_add(discarded.size());
    return discarded;
}

std::size_t AsioEventBus::backlog() const {
    std::size_t pending = 0;
    for (std::size_t i = 0; i < impl_->options.lanes; ++i) {
        std::lock_guard lock(impl_->lanes[i].mutex);
        pending += impl_->lanes[i].pending;
    }
    return pending;
}

std::size_t AsioEventBus::scheduled_backlog() const {
    std::lock_guard lock(impl_->schedule_mutex);
    return impl_->scheduled.size();
}

BusStats AsioEventBus::stats() const {
    BusStats s;
    s.delivered = impl_->delivered.load();
    s.handler_failures = impl_->handler_failures.load();
    s.dead_lettered = impl_->dead_lettered.load();
    s.rejected = impl_->rejected.load();
    s.filtered = impl_->filtered.load();
    s.held_back = impl_->held_back.load();
    s.scheduled_discarded = impl_->scheduled_discarded.load();
    for (std::size_t i = 0; i < impl_->options.lanes; ++i) {
        std::lock_guard lock(impl_->lanes[i].mutex);
        s.published += impl_->lanes[i].published;
        s.queue_depth += impl_->lanes[i].pending;
    }
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
    for (DeadLetter& letter : letters) impl_->enqueue(std::move(letter.event), letter.subscriber_id, false);
    return letters.size();
}

} // namespace payments::infrastructure
