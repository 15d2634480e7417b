#include "outbox.hpp"

namespace payments::application {

Result<void> commit_and_publish(Ports const& ports, Changes changes) {
    // The store may take the aggregates apart; the events are needed after it.
    std::vector<domain::Event> events = changes.events;
    std::vector<ScheduledEvent> scheduled = changes.scheduled;
    if (auto committed = ports.store.commit(std::move(changes)); !committed) return committed;
    for (auto& event : events) {
        domain::EventEnvelope const envelope = domain::envelope_of(event);
        if (!ports.bus.publish(std::move(event)))
            ports.logger.warn("event committed but not queued; it stays in the outbox for the next start",
                              {{"event_id", envelope.id.str()}, {"invoice_id", envelope.invoice_id.str()}});
    }
    for (auto& [event, at] : scheduled) ports.bus.schedule(std::move(event), at);
    return {};
}

} // namespace payments::application
