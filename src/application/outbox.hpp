#pragma once
// The transactional outbox, written once: a use case commits its changes with
// the events they cause, and only then are the events handed to the bus.

#include <payments/application/ports.hpp>

namespace payments::application {

/// Commits `changes` (aggregates, events, scheduled events, idempotency
/// completion) in one transaction; once it is durable, publishes the events
/// and schedules the scheduled ones on the bus. An event the bus refuses (it
/// is stopping) stays in the outbox and is published again at the next start.
Result<void> commit_and_publish(Ports const& ports, Changes changes);

/// Store::update() on the invoice, then publishes as commit_and_publish does.
Result<void> update_and_publish(Ports const& ports, domain::InvoiceId const& id, Store::Decide const& decide,
                                Store::Apply const& apply);

} // namespace payments::application
