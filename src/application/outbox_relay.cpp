#include <payments/application/outbox_relay.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>

namespace payments::application {

namespace {

// How soon a round that found the bus full looks again (at most the fallback interval).
constexpr domain::Duration busy_retry = std::chrono::seconds(1);

} // namespace

// The rounds watch() runs: one at a time; a wake-up during a round makes it go again.
struct OutboxRelay::Watch {
    Watch(OutboxRelay& r, Scheduler& s, Clock const& c, domain::Duration every)
        : relay(r), scheduler(s), clock(c), interval(every) {}

    OutboxRelay& relay;
    Scheduler& scheduler;
    Clock const& clock;
    domain::Duration interval;
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

    // One bounded round; what is left is claimed by the next, posted behind
    // the scheduler's other work (its timers run in between). A full bus
    // claims nothing (the rows stay for other processes) and looks again a
    // little later.
    static void run(std::shared_ptr<Watch> const& self) {
        OutboxRelay::Restarted round;
        {
            std::lock_guard running(self->round);
            {
                std::lock_guard guard(self->mutex);
                self->queued = false;
                if (self->stopped) return;
            }
            // A store that cannot be read now: the next wake-up or the fallback round tries again.
            try {
                round = self->relay.take_over();
            } catch (StorageFailure const&) {
                return;
            }
        }
        if (round.bus_full) post(self, self->clock.now() + std::min(self->interval, busy_retry));
        else if (round.more) post(self);
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
    Restarted restarted;
    for (auto& event : store_.undelivered()) {
        domain::EventId const id = domain::envelope_of(event).id;
        if (bus_.publish(std::move(event))) ++restarted.republished;
        else store_.left_undelivered(id);
    }
    for (auto& [event, at] : store_.scheduled()) {
        domain::EventId const id = domain::envelope_of(event).id;
        if (bus_.schedule(std::move(event), at)) ++restarted.rearmed;
        else store_.left_undelivered(id);
    }
    Restarted const taken = take_over();
    restarted.republished += taken.republished;
    restarted.rearmed += taken.rearmed;
    return restarted;
}

OutboxRelay::Restarted OutboxRelay::take_over() {
    Restarted taken;
    // The bus already holds enough: claim nothing now (others may take them meanwhile).
    if (bus_.backlog() >= max_backlog) {
        taken.bus_full = true;
        return taken;
    }
    TakenOver found = store_.take_over(batch);
    // Events: those of `batch` invoices at most, so a whole batch may hold more.
    taken.more = found.events.size() >= batch || found.scheduled.size() >= batch;
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
        for (std::size_t i = events; i < found.events.size(); ++i)
            store_.left_undelivered(domain::envelope_of(found.events[i]).id);
        for (std::size_t i = scheduled; i < found.scheduled.size(); ++i)
            store_.left_undelivered(domain::envelope_of(found.scheduled[i].event).id);
    }
    return taken;
}

void OutboxRelay::watch(Scheduler& scheduler, Clock const& clock, domain::Duration interval) {
    auto watch = std::make_shared<Watch>(*this, scheduler, clock, interval);
    std::weak_ptr<Watch> weak = watch;
    if (!store_.watch_work_left([weak] {
            if (auto w = weak.lock()) Watch::post(w);
        }))
        return;
    watch_ = watch;
    Watch::arm(watch_);
    Watch::post(watch_); // what restart()'s one round left
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
