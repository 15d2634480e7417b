#pragma once
// Builders for domain objects in a known state, as ddd-by-examples names its
// fixtures: an_invoice(), a_processing_invoice(), a_failed_invoice()...

#include <payments/domain/invoice.hpp>
#include <payments/domain/payment.hpp>
#include <payments/infrastructure/system/clocks.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <deque>
#include <sstream>
#include <string>

// Lets doctest print a Result: the error in full, or that there is a value.
template <class T>
struct doctest::StringMaker<payments::Result<T>> {
    static doctest::String convert(payments::Result<T> const& result) {
        if (result) return "value";
        std::ostringstream os;
        os << "error " << result.error();
        return os.str().c_str();
    }
};

namespace test {

using namespace payments;
using namespace payments::domain;
using namespace std::chrono_literals;

inline Money usd(std::int64_t cents) { return Money::positive(cents, Currency::usd()).value(); }

inline Timestamp t0() { return infrastructure::ManualClock::default_start(); }

// Event metadata with readable, unique ids; tests call it from several threads.
inline EventMeta meta(Timestamp now = t0()) {
    static std::atomic<int> counter = 0;
    return {EventId::parse("evt_" + std::to_string(++counter)).value(), CorrelationId::parse("req_test").value(), now};
}

inline PaymentId pid(int n) { return PaymentId::parse("pay_" + std::to_string(n)).value(); }
inline InvoiceId iid(std::string const& s = "inv_1") { return InvoiceId::parse(s).value(); }

// A new attempt whose gateway key is its payment id with a test suffix.
inline NewAttempt attempt(PaymentId id) {
    std::string key = std::string(id.str()) + ".test";
    return {std::move(id), std::move(key)};
}
inline NewAttempt attempt(int n) { return attempt(pid(n)); }

// Random bits from a script, for jitter at its exact bounds.
class ScriptedRandom final : public Random {
public:
    explicit ScriptedRandom(std::deque<std::uint64_t> values) : values_(std::move(values)) {}
    std::uint64_t next_u64() override {
        REQUIRE(!values_.empty());
        auto v = values_.front();
        values_.pop_front();
        if (values_.empty()) values_.push_back(v); // repeat the last one
        return v;
    }

private:
    std::deque<std::uint64_t> values_;
};

/// A new invoice numbered `n`: id inv_<n>, 100 + n cents (distinct amounts).
inline Invoice invoice_numbered(int n) {
    return Invoice::from(Invoice::create(iid("inv_" + std::to_string(n)), usd(100 + n), "", meta()).value());
}

inline Invoice an_invoice(Money amount = usd(1000)) {
    return Invoice::from(Invoice::create(iid(), amount, "order 42", meta()).value());
}

// An invoice whose attempt `payment` is at the gateway.
inline Invoice a_processing_invoice(std::string const& method = "pm_card_ok", PaymentId payment = pid(1)) {
    Invoice invoice = an_invoice();
    invoice.apply(invoice.request_payment(attempt(std::move(payment)), method, meta()).value());
    return invoice;
}

inline PaymentRequested current_request(Invoice const& invoice, std::string const& method = "pm_card_ok") {
    return PaymentRequested{{EventId::parse("evt_req").value(), t0(), CorrelationId::parse("req_test").value(),
                             invoice.id(), invoice.attempts().back(), invoice.current_attempt()},
                            invoice.amount(),
                            method,
                            std::string(invoice.attempts().back().str()) + ".test",
                            t0()};
}

inline PaymentSucceeded success_of(Invoice const& invoice) {
    return Payment::from(current_request(invoice)).succeed("ch_1", invoice.amount(), meta()).value();
}

inline PaymentFailed failure_of(Invoice const& invoice, FailureKind kind, std::string reason = "no") {
    return Payment::from(current_request(invoice)).fail({kind, std::move(reason)}, meta()).value();
}

inline Invoice a_paid_invoice() {
    Invoice invoice = a_processing_invoice();
    invoice.apply(std::get<InvoicePaid>(invoice.settle_success(success_of(invoice), meta()).value()));
    return invoice;
}

inline Invoice a_failed_invoice(FailureKind kind = FailureKind::declined) {
    Invoice invoice = a_processing_invoice();
    auto failed = failure_of(invoice, kind);
    ScriptedRandom random({0});
    auto next = invoice.settle_failure(failed, RetryPolicy{.max_attempts = 1}, random, attempt(99), meta()).value();
    invoice.apply(failed);
    invoice.apply(std::get<InvoiceFailed>(next));
    return invoice;
}

} // namespace test
