#pragma once
// The transactional outbox, written once: a use case commits its changes with
// the events they cause, and only then are the events handed to the bus.

#include <payments/application/ports.hpp>

#include <functional>
#include <memory>

namespace payments::application {

/// Commits `changes` (aggregates, events, scheduled events, idempotency
/// completion) in one transaction; once it is durable, publishes the events
/// and schedules the scheduled ones on the bus. An event the bus refuses (it
/// is stopping) stays in the outbox and is published again at the next start.
Result<void> commit_and_publish(Ports const& ports, Changes changes);

/// What commit_and_publish_async() hands its `done`: the commit's result,
/// and whether `done` runs where it was posted (the scheduler's threads).
struct CommitAnswer {
    Result<void> committed;
    /// False when the scheduler refused the post (it throws: it is shutting
    /// down): `done` runs on the store's thread, where it may only release,
    /// log and start what does not wait. `committed` is still the commit's
    /// own result: a durable commit is not reported as a failure (review 19, F7).
    bool posted = true;
};

/// commit_and_publish() without holding the caller's thread: Store::commit_async(),
/// then, on the store's thread as soon as it answers, the events are published
/// if it committed (in the order the store answers its commits, so that the
/// events of one payment never overtake each other), and `done` gets the
/// commit's result on the scheduler's threads (Scheduler::post).
/// `ports` refers to `owner`'s wiring: once `owner` has expired, the store's
/// answer touches nothing of it, and `done` is never called (the events stay
/// in the outbox). Whoever destroys the owner waits until it has expired
/// before destroying the wiring (as ~Engine does). `answered`, if given, runs
/// on the store's thread once the rest is posted (or refused). If the
/// scheduler refuses the post (it throws), `done` is called there, on the
/// store's thread, with `posted` false.
void commit_and_publish_async(Ports const& ports, Changes changes, std::weak_ptr<void const> owner,
                              std::function<void(CommitAnswer)> done, std::function<void()> answered = {});

/// Store::update() on the invoice, then publishes as commit_and_publish does.
Result<void> update_and_publish(Ports const& ports, domain::InvoiceId const& id, Store::Decide const& decide,
                                Store::Apply const& apply);

/// update_and_publish() without holding the caller's thread: Store::update_async(),
/// then, on the thread the store answers on, the events are published if it
/// committed, and `done` gets the result on the scheduler's threads, as
/// commit_and_publish_async() does (the same rules for `owner` and a refused
/// post). An answer the store gives on the caller's thread before
/// update_async() returns (`not_found`, `decide`'s refusal, a store that
/// commits in place) is published and handed to `done` there and then, as
/// update_and_publish() would; `done` may then commit.
void update_and_publish_async(Ports const& ports, domain::InvoiceId const& id, Store::Decide const& decide,
                              Store::Apply const& apply, std::weak_ptr<void const> owner,
                              std::function<void(CommitAnswer)> done);

} // namespace payments::application
