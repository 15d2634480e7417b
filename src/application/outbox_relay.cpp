#include <payments/application/outbox_relay.hpp>

#include <atomic>
#include <mutex>

namespace payments::application {

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

    // Runs a round on the scheduler's thread at once, unless one is already queued.
    static void post(std::shared_ptr<Watch> const& self) {
        {
            std::lock_guard guard(self->mutex);
            if (self->stopped || std::exchange(self->queued, true)) return;
        }
        std::weak_ptr<Watch> weak = self;
        self->scheduler.call_at(self->clock.now(), [weak] {
            if (auto watch = weak.lock()) watch->run();
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

    void run() {
        std::lock_guard running(round);
        {
            std::lock_guard guard(mutex);
            queued = false;
            if (stopped) return;
        }
        // A store that cannot be read now: the next wake-up or the fallback round tries again.
        try {
            relay.take_over();
        } catch (StorageFailure const&) {
        }
    }
};

OutboxRelay::OutboxRelay(Store& store, EventBus& bus) : store_(store), bus_(bus) {
    subscription_ = bus_.subscribe_delivered("outbox-relay", [&store](domain::Event const& event) {
        store.mark_delivered(domain::envelope_of(event).id);
    });
}

OutboxRelay::~OutboxRelay() { stop(); }

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
    for (;;) {
        TakenOver found = store_.take_over(batch);
        if (found.empty()) return taken;
        bool const more = found.events.size() == batch || found.scheduled.size() == batch;
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
            for (std::size_t i = events; i < found.events.size(); ++i)
                store_.left_undelivered(domain::envelope_of(found.events[i]).id);
            for (std::size_t i = scheduled; i < found.scheduled.size(); ++i)
                store_.left_undelivered(domain::envelope_of(found.scheduled[i].event).id);
            return taken;
        }
        if (!more) return taken;
    }
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
