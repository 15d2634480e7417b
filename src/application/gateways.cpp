#include <payments/application/gateways.hpp>

#include <payments/domain/ids.hpp>

#include <set>

namespace payments::application {

using namespace domain;

Result<Gateways> Gateways::make(std::vector<NamedGateway> gateways, BreakerOptions options) {
    if (auto valid = options.validate(); !valid) return valid.error();
    if (gateways.empty()) return reject(ErrorCode::invalid_argument, "at least one gateway is needed");
    std::set<std::string, std::less<>> names;
    Gateways list;
    for (auto& named : gateways) {
        if (!is_valid_id(named.name))
            return reject(ErrorCode::invalid_argument, "a gateway name must be 1-64 characters of A-Z a-z 0-9 _ -");
        if (!named.gateway) return reject(ErrorCode::invalid_argument, "gateway " + named.name + " is null");
        if (!names.insert(named.name).second)
            return reject(ErrorCode::invalid_argument, "gateway " + named.name + " is named twice");
        list.entries_.push_back(
            std::make_unique<Entry>(std::move(named.name), std::move(named.gateway), options));
    }
    return list;
}

Gateways::Gateways(PaymentGateway& single, BreakerOptions options, std::string name) {
    // Not owned: an aliasing pointer with nothing to delete.
    std::shared_ptr<PaymentGateway> unowned(std::shared_ptr<PaymentGateway>(), &single);
    entries_.push_back(std::make_unique<Entry>(std::move(name), std::move(unowned), options));
}

std::string const& Gateways::choose(Timestamp now) const {
    for (auto const& entry : entries_)
        if (entry->breaker.usable(now)) return entry->name;
    return entries_.front()->name;
}

Gateways::Entry* Gateways::find(std::string_view name) const {
    if (name.empty()) return entries_.front().get();
    for (auto const& entry : entries_)
        if (entry->name == name) return entry.get();
    return nullptr;
}

std::vector<GatewayHealth> Gateways::health(Timestamp now) const {
    std::vector<GatewayHealth> all;
    all.reserve(entries_.size());
    for (auto const& entry : entries_)
        all.push_back({entry->name, entry->breaker.state(now), entry->breaker.usable(now)});
    return all;
}

bool may_move_to_another_gateway(Payment const& last_attempt) noexcept {
    return last_attempt.status() != PaymentStatus::requested && !last_attempt.unresolved();
}

std::string route_new_attempt(Gateways const& gateways, Timestamp now, Payment const* last_attempt) {
    if (last_attempt && !may_move_to_another_gateway(*last_attempt)) {
        if (auto* held = gateways.find(last_attempt->gateway())) return held->name;
    }
    return gateways.choose(now);
}

bool is_provider_failure(ChargeAnswer const& answer) noexcept {
    return answer.failure && answer.failure->kind != FailureKind::declined && !answer.card_level && !answer.over_limit;
}

} // namespace payments::application
