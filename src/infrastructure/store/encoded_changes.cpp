#include "encoded_changes.hpp"

#include "record_codec.hpp"

namespace payments::infrastructure {

using namespace domain;

Encoded encode(application::Changes const& changes) {
    Encoded e;
    if (changes.invoice) {
        Invoice const& invoice = changes.invoice->invoice;
        e.invoice = Encoded::Row{std::string(invoice.id().str()), {}, 0, static_cast<std::int64_t>(invoice.status()),
                                 invoice.version(), changes.invoice->expected_version, codec::encode(invoice),
                                 std::string(invoice.under_review().str())};
    }
    for (auto const& [payment, expected] : changes.payments)
        e.payments.push_back({std::string(payment.id().str()), std::string(payment.invoice_id().str()),
                              payment.attempt(), static_cast<std::int64_t>(payment.status()), payment.version(),
                              expected, codec::encode(payment), {}});
    for (Event const& event : changes.events) {
        EventEnvelope const& env = envelope_of(event);
        e.events.push_back({std::string(env.id.str()), std::string(env.invoice_id.str()), ticks(env.occurred_at),
                            codec::encode(event)});
    }
    for (auto const& [event, at] : changes.scheduled)
        e.scheduled.push_back({std::string(envelope_of(event).id.str()), std::string(envelope_of(event).invoice_id.str()),
                               ticks(at), codec::encode(event)});
    return e;
}

} // namespace payments::infrastructure
