#pragma once
// The one place where what the durable stores keep is turned into bytes and
// back: invoices, payments, events and idempotency outcomes. Every record
// starts with its format version, so that rows written by an older release
// still decode after a field is added (add a version, keep the old reader).

#include <payments/application/idempotency_store.hpp>
#include <payments/domain/events.hpp>
#include <payments/domain/invoice.hpp>
#include <payments/domain/payment.hpp>

#include <stdexcept>
#include <string>
#include <string_view>

namespace payments::infrastructure::codec {

/// A record that cannot be decoded: truncated, of an unknown version, or not valid.
struct CorruptRecord : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string encode(domain::Invoice const& invoice);
std::string encode(domain::Payment const& payment);
std::string encode(domain::Event const& event);
std::string encode(application::PaymentResult const& outcome);

/// Each throws CorruptRecord on bytes it cannot read.
domain::Invoice decode_invoice(std::string_view bytes);
domain::Payment decode_payment(std::string_view bytes);
domain::Event decode_event(std::string_view bytes);
application::PaymentResult decode_outcome(std::string_view bytes);

} // namespace payments::infrastructure::codec
