#include <payments/domain/events.hpp>

namespace payments::domain {

std::string_view to_string(FailureKind kind) noexcept {
    switch (kind) {
    case FailureKind::declined: return "DECLINED";
    case FailureKind::transient: return "TRANSIENT";
    case FailureKind::unknown_outcome: return "UNKNOWN_OUTCOME";
    }
    return "UNKNOWN";
}

EventEnvelope const& envelope_of(Event const& event) noexcept {
    return std::visit([](auto const& e) -> EventEnvelope const& { return e.envelope; }, event);
}

std::string_view event_name(Event const& event) noexcept {
    static constexpr std::string_view names[] = {"InvoiceCreated", "PaymentRequested", "PaymentSucceeded",
                                                 "PaymentFailed",  "InvoicePaid",      "InvoiceFailed",
                                                 "InvoiceNeedsReview"};
    static_assert(std::size(names) == event_kinds);
    return names[event.index()];
}

} // namespace payments::domain
