#include <payments/application/metrics.hpp>
#include <payments/application/payment_gateway.hpp>
#include <payments/application/ports.hpp>

#include <random>

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

domain::NewAttempt new_attempt(Ports const& ports) {
    domain::PaymentId id = domain::PaymentId::generate(ports.random);
    std::string_view const instance = ports.instance_id.empty() ? process_instance_id() : ports.instance_id;
    std::string key;
    key.reserve(id.str().size() + 1 + instance.size());
    key.append(id.str()).append(1, '.').append(instance);
    return {std::move(id), std::move(key)};
}

} // namespace payments::application
