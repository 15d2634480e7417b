// The library embedded in a program: issue an invoice, pay it with a card
// that fails once, and print how it was settled.
//
//     payments-embedded [payment-method]     (default pm_card_flaky_1)

#include <payments/engine.hpp>

#include <chrono>
#include <cstdio>
#include <future>
#include <string>

using namespace std::chrono_literals;
using namespace payments;

int main(int argc, char** argv) {
    std::string const method = argc > 1 ? argv[1] : "pm_card_flaky_1";

    EngineOptions options;
    options.log_output = nullptr; // keep stdout for the report; use stderr for JSON logs
    options.processor.retry = {.base = 50ms, .multiplier = 2.0, .cap = 1s, .max_attempts = 3};
    auto engine = Engine::create(options);
    if (!engine) {
        std::fprintf(stderr, "cannot start: %s\n", engine.error().detail.c_str());
        return 1;
    }
    application::PaymentService& payments = (*engine)->service();

    auto amount = domain::Money::positive(1999, domain::Currency::usd()).value();
    auto invoice = payments.create_invoice({.amount = amount, .description = "Annual plan"}).value();

    // The outcome arrives as an event; wait for this invoice's.
    std::promise<void> settled;
    auto on_paid = (*engine)->bus().subscribe<domain::InvoicePaid>("example", [&](domain::InvoicePaid const& e) {
        if (e.envelope.invoice_id == invoice.id()) settled.set_value();
    });
    auto on_failed = (*engine)->bus().subscribe<domain::InvoiceFailed>("example", [&](domain::InvoiceFailed const& e) {
        if (e.envelope.invoice_id == invoice.id()) settled.set_value();
    });

    auto requested = payments.request_payment({.invoice_id = invoice.id(), .payment_method = method});
    if (!requested.result) {
        std::fprintf(stderr, "payment refused: %s\n", requested.result.error().detail.c_str());
        return 1;
    }
    if (settled.get_future().wait_for(30s) != std::future_status::ready) {
        std::fprintf(stderr, "no outcome within 30 s\n");
        return 1;
    }
    (*engine)->wait_idle(5s);

    auto const final_state = payments.invoice(invoice.id()).value();
    std::printf("invoice %s  %s  %s after %d attempt(s)\n", std::string(final_state.id().str()).c_str(),
                final_state.amount().to_string().c_str(), std::string(to_string(final_state.status())).c_str(),
                final_state.current_attempt());
    for (auto const& attempt : payments.payments_of(invoice.id()).value()) {
        std::string detail = attempt.failure() ? std::string(to_string(attempt.failure()->kind)) + ": " +
                                                     attempt.failure()->reason
                                               : attempt.gateway_reference();
        std::printf("  attempt %d  %s  %-9s %s\n", attempt.attempt(), std::string(attempt.id().str()).c_str(),
                    std::string(to_string(attempt.status())).c_str(), detail.c_str());
    }
    on_paid.reset();
    on_failed.reset();
    (*engine)->shutdown(5s);
    return final_state.status() == domain::InvoiceStatus::paid ? 0 : 2;
}
