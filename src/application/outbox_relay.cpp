#include <payments/application/outbox_relay.hpp>

namespace payments::application {

OutboxRelay::OutboxRelay(Store& store, EventBus& bus) : store_(store), bus_(bus) {
    subscription_ = bus_.subscribe_delivered("outbox-relay", [&store](domain::Event const& event) {
        store.mark_delivered(domain::envelope_of(event).id);
    });
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
