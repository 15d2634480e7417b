#include <payments/application/metrics.hpp>
#include <payments/application/payment_gateway.hpp>
#include <payments/application/ports.hpp>

#include <atomic>
#include <cstdint>
#include <random>
#include <string>

namespace payments::application {

std::string_view to_string(ReviewCause cause) noexcept {
    switch (cause) {
    case ReviewCause::unresolved: return "unresolved";
    case ReviewCause::amount_mismatch: return "amount_mismatch";
    case ReviewCause::contradiction: return "contradiction";
    }
    return "unknown";
}

std::string_view to_string(JanitorFinding finding) noexcept {
    switch (finding) {
    case JanitorFinding::stalled_attempt: return "stalled_attempt";
    case JanitorFinding::unverified: return "unverified";
    }
    return "unknown";
}

std::string_view to_string(ChargeStatus::State state) noexcept {
    switch (state) {
    case ChargeStatus::State::charged: return "CHARGED";
    case ChargeStatus::State::declined: return "DECLINED";
    case ChargeStatus::State::pending: return "PENDING";
    case ChargeStatus::State::absent: return "ABSENT";
    }
    return "UNKNOWN";
}

namespace {

// 80 bits from the operating system's entropy, drawn once per process.
std::string const& process_instance_id() {
    static std::string const id = [] {
        std::random_device entropy;
        static constexpr char digits[] = "abcdefghijklmnopqrstuvwxyz234567";
        std::string text;
        for (int i = 0; i < 16; ++i) text += digits[entropy() % 32];
        return text;
    }();
    return id;
}

} // namespace

bool is_key_of_this_run(Ports const& ports, std::string_view gateway_key) {
    auto const dot = gateway_key.find('.');
    if (dot == std::string_view::npos) return false;
    std::string_view const suffix = gateway_key.substr(dot + 1);
    if (!ports.instance_id.empty()) return suffix == ports.instance_id;
    std::string_view const process = process_instance_id();
    return suffix.size() > process.size() && suffix.starts_with(process) && suffix[process.size()] == '-';
}

domain::NewAttempt new_attempt(Ports const& ports, domain::Payment const* last_attempt) {
    domain::PaymentId id = domain::PaymentId::generate(ports.random);
    std::string key;
    key.reserve(id.str().size() + 40);
    key.append(id.str()).append(1, '.');
    if (!ports.instance_id.empty()) {
        key.append(ports.instance_id);
    } else {
        // Two wirings in one process may share a seed: a process-wide count
        // keeps their keys apart, the process's instance id keeps processes apart.
        static std::atomic<std::uint64_t> issued{0};
        key.append(process_instance_id()).append(1, '-').append(std::to_string(issued.fetch_add(1) + 1));
    }
    return {std::move(id), std::move(key), route_new_attempt(ports.gateways, ports.clock.now(), last_attempt)};
}

} // namespace payments::application
