#pragma once
// The transactional outbox, written once: a use case commits its changes with
// the events they cause, and only then are the events handed to the bus.

#include <payments/application/ports.hpp>

#include <functional>

namespace payments::application {

/// Commits `changes` (aggregates, events, scheduled events, idempotency
/// completion) in one transaction; once it is durable, publishes the events
/// and schedules the scheduled ones on the bus. An event the bus refuses (it
/// is stopping) stays in the outbox and is published again at the next start.
Result<void> commit_and_publish(Ports const& ports, Changes changes);

/// commit_and_publish() without holding the caller's thread: Store::commit_async(),
/// then, on the scheduler's threads (Scheduler::post), the events are
/// published if it committed and `done` gets the commit's result.
/// `answered`, if given, runs first, on the store's thread, as soon as the
/// store has answered.
void commit_and_publish_async(Ports const& ports, Changes changes, std::function<void(Result<void>)> done,
                              std::function<void()> answered = {});

/// Store::update() on the invoice, then publishes as commit_and_publish does.
Result<void> update_and_publish(Ports const& ports, domain::InvoiceId const& id, Store::Decide const& decide,
                                Store::Apply const& apply);

} // namespace payments::application
