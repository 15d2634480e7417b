#include <payments/application/event_bus.hpp>

#include <memory>
#include <vector>

namespace payments::application {

namespace {

// One subscription per event kind, held as one.
struct Subscriptions final : Subscription::Handle {
    std::vector<Subscription> kinds;
};

} // namespace

Subscription EventBus::subscribe_all(std::string name, std::function<void(domain::Event const&)> handler) {
    auto all = std::make_unique<Subscriptions>();
    all->kinds.reserve(domain::event_kinds);
    // The handler is shared: a bus may call it for two kinds at once only for
    // two invoices, as it may for one kind.
    auto shared = std::make_shared<std::function<void(domain::Event const&)>>(std::move(handler));
    for (std::size_t kind = 0; kind < domain::event_kinds; ++kind)
        all->kinds.push_back(subscribe_kind(kind, name, [shared](domain::Event const& event) { (*shared)(event); }));
    return Subscription(std::move(all));
}

Subscription EventBus::subscribe_delivered(std::string name, std::function<void(domain::Event const&)> handler) {
    return subscribe_all(std::move(name), std::move(handler));
}

} // namespace payments::application
