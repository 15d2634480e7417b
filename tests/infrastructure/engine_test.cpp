#include "support/builders.hpp"

#include <payments/engine.hpp>

using namespace test;

namespace {

std::unique_ptr<Engine> an_engine(EngineOptions options = {}) {
    options.log_output = nullptr;
    options.threads = 2;
    options.seed = 11;
    return Engine::create(options).value();
}

} // namespace

SCENARIO("the engine runs a whole flow on its own threads") {
    auto engine = an_engine();
    auto invoice = engine->service().create_invoice({.amount = usd(1999)}).value();
    REQUIRE(engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_ok"}).result);
    REQUIRE(engine->wait_idle(std::chrono::seconds(10)));
    CHECK(engine->service().invoice(invoice.id()).value().status() == InvoiceStatus::paid);
    std::string const metrics = engine->metrics().render();
    CHECK(metrics.find("payments_succeeded_total 1\n") != std::string::npos);
    CHECK(metrics.find("invoices{status=\"PAID\"} 1\n") != std::string::npos);
    CHECK(metrics.find("bus_events_delivered_total") != std::string::npos);
    auto const report = engine->shutdown(std::chrono::seconds(5));
    CHECK(report.scheduled_dropped == 0);
    CHECK(report.unsettled.total() == 0);
    CHECK(engine->shutdown(std::chrono::seconds(5)).scheduled_dropped == 0); // idempotent
}

SCENARIO("shutdown refuses new requests at once, drops retries that are not due and says what is unsettled") {
    EngineOptions options;
    // Full jitter may draw any delay up to 500 h: one under a minute is a 1-in-30000 chance.
    options.processor.retry = {.base = std::chrono::hours(500), .cap = std::chrono::hours(500)};
    auto engine = an_engine(options);
    auto invoice = engine->service().create_invoice({.amount = usd(500)}).value();
    engine->service().request_payment({.invoice_id = invoice.id(), .payment_method = "pm_card_unavailable"});
    REQUIRE(engine->wait_idle(std::chrono::seconds(10)));
    CHECK(engine->bus().stats().scheduled_pending == 1);
    auto other = engine->service().create_invoice({.amount = usd(700)}).value();
    auto const report = engine->shutdown(std::chrono::seconds(5));
    CHECK(report.scheduled_dropped == 1);
    CHECK(report.unsettled.retry_due == 1);
    CHECK(report.unsettled.total() == 1);
    auto refused = engine->service().request_payment({.invoice_id = other.id(), .payment_method = "pm_card_ok"});
    CHECK(refused.result.error().code == ErrorCode::unavailable);
    CHECK(engine->service().invoice(other.id()).value().status() == InvoiceStatus::pending);
}

SCENARIO("an engine with an invalid policy is refused") {
    EngineOptions options;
    options.processor.retry.max_attempts = 0;
    CHECK(Engine::create(options).error().code == ErrorCode::invalid_argument);
}
