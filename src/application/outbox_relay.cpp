#include <payments/application/outbox_relay.hpp>

#include <algorithm>
#include <atomic>
#include <limits>
#include <mutex>
#include <optional>

namespace payments::application {

namespace {

// How soon a round that found the bus full looks again (at most the fallback interval).
constexpr domain::Duration busy_retry = std::chrono::seconds(1);
// The same at start, where readiness waits for it: a full bus drains in milliseconds.
constexpr domain::Duration start_retry = std::chrono::milliseconds(50);

} // namespace

// The rounds watch() runs: one at a time; a wake-up during a round makes it go again.
struct OutboxRelay::Watch {
    Watch(OutboxRelay& r, Scheduler& s, Clock const& c, domain::Duration every, bool many)
        : relay(r), scheduler(s), clock(c), interval(every), shared(many) {}

    OutboxRelay& relay;
    Scheduler& scheduler;
    Clock const& clock;
    domain::Duration interval;
    std::atomic<bool> shared; // the store is shared by several processes: take-over rounds too
    std::mutex mutex;
    bool stopped = false; // Owned by: mutex
    bool queued = false;  // Owned by: mutex; a round is posted and has not started
    std::mutex round;     // held by the round that runs

    // Runs a round on the scheduler's thread at `at` (at once by default),
    // unless one is already queued.
    static void post(std::shared_ptr<Watch> const& self, std::optional<domain::Timestamp> at = std::nullopt) {
        {
            std::lock_guard guard(self->mutex);
            if (self->stopped || std::exchange(self->queued, true)) return;
        }
        std::weak_ptr<Watch> weak = self;
        self->scheduler.call_at(at.value_or(self->clock.now()), [weak] {
            if (auto watch = weak.lock()) run(watch);
        });
    }

    // The fallback: a round every `interval`, whatever the store said.
    static void arm(std::shared_ptr<Watch> const& self) {
        {
            std::lock_guard guard(self->mutex);
            if (self->stopped) return;
        }
        std::weak_ptr<Watch> weak = self;
        self->scheduler.call_at(self->clock.now() + self->interval, [weak] {
            auto watch = weak.lock();
            if (!watch) return;
            post(watch);
            arm(watch);
        });
    }

    // One bounded round: the start's next pages while it has some, then
    // take-over. What is left goes to the next round, posted behind the
    // scheduler's other work (its timers run in between). A full bus takes
    // nothing (rows stay in the store, for other processes too) and looks
    // again a little later.
    static void run(std::shared_ptr<Watch> const& self) {
        OutboxRelay::Restarted round;
        bool const starting = self->relay.restarting();
        {
            std::lock_guard running(self->round);
            {
                std::lock_guard guard(self->mutex);
                self->queued = false;
                if (self->stopped) return;
            }
            try {
                if (starting) round = self->relay.resume_start(1);
                else if (self->shared) round = self->relay.take_over();
            } catch (StorageFailure const&) {
                // The start looks again; a take-over waits for the next wake-up or the fallback round.
                if (starting) post(self, self->clock.now() + std::min(self->interval, start_retry));
                return;
            }
        }
        if (round.bus_full)
            post(self, self->clock.now() + std::min(self->interval, starting ? start_retry : busy_retry));
        else if (round.more || (starting && self->shared) || self->relay.restarting()) post(self);
    }
};

OutboxRelay::OutboxRelay(Store& store, EventBus& bus) : store_(store), bus_(bus) {
    subscription_ = bus_.subscribe_delivered("outbox-relay", [&store](domain::Event const& event) {
        store.mark_delivered(domain::envelope_of(event).id);
    });
    // What another process took over while this one stalled is its to
    // deliver, not this one's; while this one may have stalled unseen, not known yet.
    filter_ = bus_.add_delivery_filter([&store](domain::Event const& event) {
        switch (store.still_owns(domain::envelope_of(event).id)) {
        case Ownership::lost: return Delivery::drop;
        case Ownership::doubtful: return Delivery::later;
        case Ownership::owned: break;
        }
        return Delivery::deliver;
    });
}

OutboxRelay::~OutboxRelay() {
    stop();
    filter_.reset(); // no call of it is running once it returns: the store may go next
}

OutboxRelay::Restarted OutboxRelay::restart() {
    {
        std::lock_guard guard(start_mutex_);
        phase_ = Phase::events;
        // The passes end where the store was when it opened: what this run
        // committed is its use cases' to publish, even when the first page
        // fails and is read again later (review 21, F2 and F6).
        StartMark const mark = store_.start_mark();
        events_from_ = {std::nullopt, mark.outbox};
        scheduled_from_ = {std::nullopt, mark.scheduled};
        restarting_ = true;
        republishing_ = true;
    }
    Restarted restarted = resume_start(std::numeric_limits<std::size_t>::max());
    if (restarting()) return restarted; // watch() goes on, then takes over
    Restarted const taken = take_over();
    restarted.republished += taken.republished;
    restarted.rearmed += taken.rearmed;
    return restarted;
}

bool OutboxRelay::restarting() const { return restarting_.load(); }

bool OutboxRelay::republishing() const { return republishing_.load(); }

OutboxRelay::Restarted OutboxRelay::resume_start(std::size_t pages) {
    Restarted done;
    std::lock_guard guard(start_mutex_);
    // The bus refuses once it is stopping: what is left stays in the store for the next start.
    auto refused = [&](auto first, auto last, auto id_of) {
        for (; first != last; ++first) store_.left_undelivered(id_of(*first));
        phase_ = Phase::done;
    };
    while (phase_ == Phase::events) {
        if (pages-- == 0) return done;
        // Full lanes hold back a page that has rows, only: on PostgreSQL the
        // start finds none (the owner is new), and ends at once (review 22, G3).
        if (bus_.backlog() >= max_backlog && !store_.undelivered_page(events_from_, 1).events.empty()) {
            done.bus_full = true;
            return done;
        }
        OutboxPage page = store_.undelivered_page(events_from_, batch);
        for (auto it = page.events.begin(); it != page.events.end(); ++it) {
            domain::EventId const id = domain::envelope_of(*it).id;
            if (!bus_.publish(std::move(*it))) {
                store_.left_undelivered(id);
                refused(std::next(it), page.events.end(), [](domain::Event const& e) { return domain::envelope_of(e).id; });
                break;
            }
            ++done.republished;
        }
        if (phase_ == Phase::done) break;
        if (page.next) events_from_ = *page.next;
        else phase_ = Phase::scheduled;
    }
    republishing_ = false;
    while (phase_ == Phase::scheduled) {
        if (pages-- == 0) return done;
        // Events not yet delivered count too: retries already due go from the
        // bus's heap to its lanes at once (review 21, F3). As above, only a
        // page that has rows waits.
        if ((bus_.scheduled_backlog() >= max_scheduled || bus_.backlog() >= max_backlog) &&
            !store_.scheduled_page(scheduled_from_, 1).events.empty()) {
            done.bus_full = true;
            return done;
        }
        ScheduledPage page = store_.scheduled_page(scheduled_from_, batch);
        for (auto it = page.events.begin(); it != page.events.end(); ++it) {
            if (!bus_.schedule(it->event, it->at)) {
                refused(it, page.events.end(), [](ScheduledEvent const& e) { return domain::envelope_of(e.event).id; });
                break;
            }
            ++done.rearmed;
        }
        if (phase_ == Phase::done) break;
        if (page.next) scheduled_from_ = std::move(*page.next);
        else phase_ = Phase::done;
    }
    restarting_ = false;
    return done;
}

OutboxRelay::Restarted OutboxRelay::take_over() {
    Restarted taken;
    // Each kind is claimed while the bus has room for it, and only then
    // (others may take them meanwhile): events while it holds fewer than
    // max_backlog undelivered, retries while it holds fewer than
    // max_scheduled not yet due (review18 A-3: a gone process's retries due
    // in an hour wait in the store, not in this one's memory). One kind full
    // does not hold the other back (review 21, F4).
    std::size_t const events_room = bus_.backlog() < max_backlog ? batch : 0;
    std::size_t const scheduled_room = bus_.scheduled_backlog() < max_scheduled ? batch : 0;
    if (events_room == 0 && scheduled_room == 0) {
        taken.bus_full = true;
        return taken;
    }
    TakenOver found = store_.take_over(events_room, scheduled_room);
    // Events: those of `batch` invoices at most, so a whole batch may hold more.
    taken.more = found.events.size() >= batch || found.scheduled.size() >= batch;
    // The kind left in the store is looked for again once the bus has room.
    taken.bus_full = !taken.more && (events_room == 0 || scheduled_room == 0);
    // The bus refuses once it is stopping: what is left stays this
    // process's, delivered at its next start.
    std::size_t events = 0;
    while (events < found.events.size() && bus_.publish(found.events[events])) ++events;
    std::size_t scheduled = 0;
    if (events == found.events.size())
        while (scheduled < found.scheduled.size() &&
               bus_.schedule(found.scheduled[scheduled].event, found.scheduled[scheduled].at))
            ++scheduled;
    taken.republished += events;
    taken.rearmed += scheduled;
    if (events < found.events.size() || scheduled < found.scheduled.size()) {
        taken.more = false;
        taken.bus_full = false;
        for (std::size_t i = events; i < found.events.size(); ++i)
            store_.left_undelivered(domain::envelope_of(found.events[i]).id);
        for (std::size_t i = scheduled; i < found.scheduled.size(); ++i)
            store_.left_undelivered(domain::envelope_of(found.scheduled[i].event).id);
    }
    return taken;
}

void OutboxRelay::watch(Scheduler& scheduler, Clock const& clock, domain::Duration interval) {
    auto watch = std::make_shared<Watch>(*this, scheduler, clock, interval, false);
    std::weak_ptr<Watch> weak = watch;
    watch->shared = store_.watch_work_left([weak] {
        if (auto w = weak.lock()) Watch::post(w);
    });
    if (!watch->shared && !restarting()) return;
    watch_ = watch;
    if (watch_->shared) Watch::arm(watch_);
    Watch::post(watch_); // what restart() left
}

void OutboxRelay::stop() {
    if (!watch_) return;
    store_.watch_work_left({});
    {
        std::lock_guard guard(watch_->mutex);
        watch_->stopped = true;
    }
    std::lock_guard running(watch_->round); // a round that runs finishes first
}

} // namespace payments::application
