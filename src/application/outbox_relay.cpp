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
    // What another process took over while this one stalled is its to deliver, not this one's.
    bus_.set_delivery_filter(
        [&store](domain::Event const& event) { return store.still_owns(domain::envelope_of(event).id); });
}

OutboxRelay::~OutboxRelay() {
    stop();
    bus_.set_delivery_filter({});
}

OutboxRelay::Restarted OutboxRelay::restart() {
    Restarted restarted;
    for (auto& event : store_.undelivered())
        if (bus_.publish(std::move(event))) ++restarted.republished;
    for (auto& [event, at] : store_.scheduled())
        if (bus_.schedule(std::move(event), at)) ++restarted.rearmed;
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
        for (auto& event : found.events) {
            if (!bus_.publish(std::move(event))) return taken; // stopping: they stay this process's, delivered at its next start
            ++taken.republished;
        }
        for (auto& [event, at] : found.scheduled) {
            if (!bus_.schedule(std::move(event), at)) return taken;
            ++taken.rearmed;
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
