#include "outbox.hpp"

#include <atomic>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

namespace payments::application {

namespace {

// Hands committed events to the bus.
void publish(Ports const& ports, std::vector<domain::Event> events, std::vector<ScheduledEvent> scheduled) {
    for (auto& event : events) {
        domain::EventEnvelope const envelope = domain::envelope_of(event);
        if (!ports.bus.publish(std::move(event))) {
            ports.logger.warn("event committed but not queued; it stays in the outbox for the next start",
                              {{"event_id", envelope.id.str()}, {"invoice_id", envelope.invoice_id.str()}});
            ports.store.left_undelivered(envelope.id);
        }
    }
    for (auto& [event, at] : scheduled) {
        domain::EventId const id = domain::envelope_of(event).id;
        if (!ports.bus.schedule(std::move(event), at)) ports.store.left_undelivered(id);
    }
}

// Calls a commit's continuation at most once, from whichever thread gets there first.
class Once {
public:
    explicit Once(std::function<void(CommitAnswer)> fn) : fn_(std::move(fn)) {}
    void call(CommitAnswer answer) {
        if (!called_.test_and_set()) fn_(std::move(answer));
    }

private:
    std::function<void(CommitAnswer)> fn_;
    std::atomic_flag called_;
};

// The scheduler (or the bus) refused a commit's continuation: `done` runs
// here, on the store's thread, told so (what was not published stays in the
// outbox). The commit's own result goes with it: a durable commit is no
// failure. The store's callback must not throw, so nothing that `done`
// throws leaves this.
void refused(Ports const& ports, Once& once, Result<void> const& committed, std::string_view what) noexcept {
    try {
        ports.logger.error("the scheduler refused a commit's continuation; what it did not publish waits in the outbox",
                           {{"error", what}});
    } catch (...) {
    }
    try {
        once.call({committed, false});
    } catch (...) {
    }
}

} // namespace

Result<void> commit_and_publish(Ports const& ports, Changes changes) {
    // The store may take the aggregates apart; the events are needed after it.
    std::vector<domain::Event> events = changes.events;
    std::vector<ScheduledEvent> scheduled = changes.scheduled;
    if (auto committed = ports.store.commit(std::move(changes)); !committed) return committed;
    publish(ports, std::move(events), std::move(scheduled));
    return {};
}

namespace {

// What both asynchronous commits do once the store answered, on the thread it
// answers on: publish what committed, then post `done` to the scheduler.
void hand_over(Ports const& ports, std::weak_ptr<void const> const& owner, std::shared_ptr<Once> const& once,
               Result<void> const& committed, std::vector<domain::Event> events, std::vector<ScheduledEvent> scheduled,
               std::function<void()>& answered) {
    // `ports` holds references into the owner's wiring (scheduler, bus, logger): held across the post,
    // so that its owner cannot finish going meanwhile; once it is gone, none of them is touched.
    auto const alive = owner.lock();
    if (!alive) return; // the events stay in the outbox for the next start
    // Counted as answered only once the rest is posted: whoever waits for it finds it queued.
    struct Answered {
        std::function<void()>& fn;
        ~Answered() {
            if (fn) fn();
        }
    } const counted{answered};
    try {
        // Published here, in the order the writer answers its commits: the events of one payment
        // never overtake each other (a synchronous settlement that committed after this one
        // publishes after it too). Queueing on the bus does not block.
        if (committed) publish(ports, std::move(events), std::move(scheduled));
        ports.scheduler.post([owner, committed, once] {
            if (auto const still = owner.lock()) once->call({committed});
        });
    } catch (std::exception const& e) {
        refused(ports, *once, committed, e.what());
    } catch (...) {
        refused(ports, *once, committed, "an exception of unknown type");
    }
}

} // namespace

void commit_and_publish_async(Ports const& ports, Changes changes, std::weak_ptr<void const> owner,
                              std::function<void(CommitAnswer)> done, std::function<void()> answered) {
    std::vector<domain::Event> events = changes.events;
    std::vector<ScheduledEvent> scheduled = changes.scheduled;
    // Shared with the posted call: if the scheduler refuses it, `done` is still called, once.
    auto once = std::make_shared<Once>(std::move(done));
    // On the store's writer thread: the rest is handed to the scheduler's threads.
    ports.store.commit_async(std::move(changes), [ports, owner = std::move(owner), events = std::move(events),
                                                  scheduled = std::move(scheduled), once,
                                                  answered = std::move(answered)](Result<void> committed) mutable {
        hand_over(ports, owner, once, committed, std::move(events), std::move(scheduled), answered);
    });
}

void update_and_publish_async(Ports const& ports, domain::InvoiceId const& id, Store::Decide const& decide,
                              Store::Apply const& apply, std::weak_ptr<void const> owner,
                              std::function<void(CommitAnswer)> done) {
    auto once = std::make_shared<Once>(std::move(done));
    // An answer given on this thread before update_async() returns (a refusal
    // of the decision, a store that commits in place) is handed on here, as
    // the synchronous form would: no hop through the scheduler, and whatever
    // `done` waits for (ending a claim) waits on the caller's thread, not on the
    // scheduler's few.
    struct Caller {
        std::thread::id const thread = std::this_thread::get_id();
        std::atomic<bool> returned{false};
    };
    auto caller = std::make_shared<Caller>();
    ports.store.update_async(id, decide, apply, [ports, owner = std::move(owner), once, caller](Result<Changes> updated) {
        if (!caller->returned.load() && caller->thread == std::this_thread::get_id()) {
            auto const alive = owner.lock();
            if (!alive) return;
            if (!updated) return once->call({updated.error()});
            try {
                publish(ports, std::move(updated->events), std::move(updated->scheduled));
            } catch (...) {
                // Committed: what was not queued waits in the outbox for the next start.
            }
            return once->call({Result<void>{}});
        }
        std::function<void()> answered;
        if (!updated) return hand_over(ports, owner, once, updated.error(), {}, {}, answered);
        hand_over(ports, owner, once, {}, std::move(updated->events), std::move(updated->scheduled), answered);
    });
    caller->returned.store(true);
}

Result<void> update_and_publish(Ports const& ports, domain::InvoiceId const& id, Store::Decide const& decide,
                                Store::Apply const& apply) {
    auto committed = ports.store.update(id, decide, apply);
    if (!committed) return committed.error();
    publish(ports, std::move(committed->events), std::move(committed->scheduled));
    return {};
}

} // namespace payments::application
