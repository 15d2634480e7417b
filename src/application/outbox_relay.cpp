#include <payments/application/outbox_relay.hpp>

namespace payments::application {

OutboxRelay::OutboxRelay(Store& store, EventBus& bus) : store_(store), bus_(bus) {
    for (std::size_t kind = 0; kind < domain::event_kinds; ++kind)
        subscriptions_.push_back(bus_.subscribe_kind(kind, "outbox-relay", [&store](domain::Event const& event) {
            store.mark_delivered(domain::envelope_of(event).id);
        }));
}

OutboxRelay::Restarted OutboxRelay::restart() {
    Restarted restarted;
    for (auto& event : store_.undelivered())
        if (bus_.publish(std::move(event))) ++restarted.republished;
    for (auto& [event, at] : store_.scheduled())
        if (bus_.schedule(std::move(event), at)) ++restarted.rearmed;
    return restarted;
}

} // namespace payments::application
