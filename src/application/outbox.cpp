#include "outbox.hpp"

namespace payments::application {

namespace {

// Hands committed events to the bus.
void publish(Ports const& ports, std::vector<domain::Event> events, std::vector<ScheduledEvent> scheduled) {
    for (auto& event : events) {
        domain::EventEnvelope const envelope = domain::envelope_of(event);
        if (!ports.bus.publish(std::move(event)))
            ports.logger.warn("event committed but not queued; it stays in the outbox for the next start",
                              {{"event_id", envelope.id.str()}, {"invoice_id", envelope.invoice_id.str()}});
    }
    for (auto& [event, at] : scheduled) ports.bus.schedule(std::move(event), at);
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

void commit_and_publish_async(Ports const& ports, Changes changes, std::function<void(Result<void>)> done,
                              std::function<void()> answered) {
    std::vector<domain::Event> events = changes.events;
    std::vector<ScheduledEvent> scheduled = changes.scheduled;
    // On the store's writer thread: the rest is handed to the scheduler's threads.
    ports.store.commit_async(std::move(changes), [ports, events = std::move(events), scheduled = std::move(scheduled),
                                                  done = std::move(done), answered = std::move(answered)](Result<void> committed) mutable {
        if (answered) answered();
        ports.scheduler.post([ports, committed = std::move(committed), events = std::move(events),
                              scheduled = std::move(scheduled), done = std::move(done)]() mutable {
            if (committed) publish(ports, std::move(events), std::move(scheduled));
            done(std::move(committed));
        });
    });
}

Result<void> update_and_publish(Ports const& ports, domain::InvoiceId const& id, Store::Decide const& decide,
                                Store::Apply const& apply) {
    auto committed = ports.store.update(id, decide, apply);
    if (!committed) return committed.error();
    publish(ports, std::move(committed->events), std::move(committed->scheduled));
    return {};
}

} // namespace payments::application
