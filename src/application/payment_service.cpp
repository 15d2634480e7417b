#include <payments/application/payment_service.hpp>

namespace payments::application {

using namespace domain;

namespace {

// Optimistic concurrency: a command retries this often when the invoice moved under it.
constexpr int commit_attempts = 8;

// What makes two requests with one key "the same request".
std::string fingerprint(RequestPayment const& command) {
    return std::string(command.invoice_id.str()) + '\n' + command.payment_method;
}

// Outcomes that are the request's answer and so are replayed; the others
// (a lost race, a shutdown) say nothing about the request and free the key.
bool replayable(PaymentOutcome const& outcome) {
    return outcome || (outcome.error().code != ErrorCode::conflict && outcome.error().code != ErrorCode::unavailable);
}

} // namespace

PaymentService::PaymentService(Ports ports) : ports_(ports) {}

CorrelationId PaymentService::correlation(CorrelationId const& given) const {
    return given.empty() ? CorrelationId::generate(ports_.random) : given;
}

Result<Invoice> PaymentService::create_invoice(CreateInvoice command) {
    InvoiceId id = command.id ? std::move(*command.id) : InvoiceId::generate(ports_.random);
    auto created = Invoice::create(std::move(id), command.amount, std::move(command.description),
                                   new_event_meta(ports_, correlation(command.correlation_id)));
    if (!created) return created.error();
    Invoice invoice = Invoice::from(*created);
    if (auto committed = ports_.store.commit({Changes::InvoiceWrite{invoice, 0}, {}}); !committed) {
        if (committed.error().code == ErrorCode::already_exists)
            return reject(ErrorCode::already_exists, "invoice " + std::string(invoice.id().str()) + " already exists");
        return committed.error();
    }
    ports_.metrics.invoice_status_changed(std::nullopt, invoice.status());
    ports_.logger.info("invoice created", {{"invoice_id", invoice.id().str()},
                                           {"correlation_id", created->envelope.correlation_id.str()},
                                           {"amount", invoice.amount().minor_units()},
                                           {"currency", invoice.amount().currency().code()}});
    ports_.bus.publish(std::move(*created));
    return invoice;
}

PaymentRequestOutcome PaymentService::request_payment(RequestPayment const& command) {
    CorrelationId const correlation_id = correlation(command.correlation_id);
    if (!command.idempotency_key) return {request_payment_once(command, correlation_id), false};

    IdempotencyKey const& key = *command.idempotency_key;
    auto claim = ports_.idempotency.claim(key, fingerprint(command), ports_.clock.now());
    switch (claim.state) {
    case IdempotencyClaim::State::replay: return {std::move(*claim.stored), true};
    case IdempotencyClaim::State::in_use:
        return {reject(ErrorCode::idempotency_key_in_use, "a request with this idempotency key is still running"),
                false};
    case IdempotencyClaim::State::mismatch:
        return {reject(ErrorCode::idempotency_key_reused,
                       "this idempotency key was used for a different request"),
                false};
    case IdempotencyClaim::State::claimed: break;
    }

    // Whatever happens below, the claim ends: completed for replay, or released.
    struct Release {
        IdempotencyStore& store;
        IdempotencyKey const& key;
        bool armed = true;
        ~Release() {
            if (armed) store.release(key);
        }
    } release{ports_.idempotency, key};

    PaymentOutcome outcome = request_payment_once(command, correlation_id);
    if (replayable(outcome)) {
        ports_.idempotency.complete(key, outcome, ports_.clock.now());
        release.armed = false;
    }
    return {std::move(outcome), false};
}

PaymentOutcome PaymentService::request_payment_once(RequestPayment const& command, CorrelationId const& correlation_id) {
    for (int round = 0; round < commit_attempts; ++round) {
        auto loaded = ports_.store.invoice(command.invoice_id);
        if (!loaded) return reject(ErrorCode::not_found, "no invoice " + std::string(command.invoice_id.str()));
        Invoice invoice = std::move(*loaded);
        InvoiceStatus const before = invoice.status();
        std::uint64_t const version = invoice.version();

        auto requested = invoice.request_payment(PaymentId::generate(ports_.random), command.payment_method,
                                                 new_event_meta(ports_, correlation_id));
        if (!requested) return requested.error();
        invoice.apply(*requested);
        Payment payment = Payment::from(*requested);

        auto committed = ports_.store.commit({Changes::InvoiceWrite{std::move(invoice), version},
                                              {Changes::PaymentWrite{payment, 0}}});
        if (!committed) {
            if (committed.error().code == ErrorCode::conflict) continue;
            return committed.error();
        }
        ports_.metrics.payment_requested();
        ports_.metrics.invoice_status_changed(before, InvoiceStatus::processing);
        ports_.logger.info("payment requested", {{"invoice_id", payment.invoice_id().str()},
                                                 {"payment_id", payment.id().str()},
                                                 {"correlation_id", correlation_id.str()},
                                                 {"attempt", payment.attempt()}});
        ports_.bus.publish(std::move(*requested));
        return payment;
    }
    return reject(ErrorCode::conflict, "invoice " + std::string(command.invoice_id.str()) + " is changing too often; try again");
}

Result<Invoice> PaymentService::invoice(InvoiceId const& id) const {
    if (auto found = ports_.store.invoice(id)) return std::move(*found);
    return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
}

Result<InvoicePage> PaymentService::invoices(InvoiceQuery const& query) const {
    if (query.limit < 1 || query.limit > InvoiceQuery::max_limit)
        return reject(ErrorCode::invalid_argument, "limit must be between 1 and 1000");
    if (query.after && !ports_.store.invoice(*query.after))
        return reject(ErrorCode::invalid_argument, "no invoice " + std::string(query.after->str()) + " to continue after");
    return ports_.store.invoices(query);
}

Result<std::vector<Payment>> PaymentService::payments_of(InvoiceId const& id) const {
    if (!ports_.store.invoice(id)) return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
    return ports_.store.payments_of(id);
}

Result<Payment> PaymentService::payment(PaymentId const& id) const {
    if (auto found = ports_.store.payment(id)) return std::move(*found);
    return reject(ErrorCode::not_found, "no payment " + std::string(id.str()));
}

} // namespace payments::application
