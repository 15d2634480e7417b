#include <payments/application/payment_service.hpp>

#include "commit_retry.hpp"
#include "outbox.hpp"

namespace payments::application {

using namespace domain;

namespace {

// What makes two requests with one key "the same request".
std::string fingerprint(RequestPayment const& command) {
    return std::string(command.invoice_id.str()) + '\n' + command.payment_method;
}

// Outcomes that depend on the request alone, and so are replayed: the payment
// it started, or a refusal of its arguments. A refusal that depends on state
// (no such invoice yet, a payment in progress, already paid, a lost race, a
// shutdown) is not the request's answer: the key is freed, and a repeat runs
// again against the state as it is then (Stripe stores neither).
bool replayable(PaymentResult const& outcome) {
    return outcome || outcome.error().code == ErrorCode::invalid_argument;
}

Result<void> refuse_when_stopped(std::atomic<bool> const& accepting) {
    if (!accepting.load(std::memory_order_acquire))
        return reject(ErrorCode::unavailable, "the service is shutting down; retry against another instance or later");
    return {};
}

} // namespace

PaymentService::PaymentService(Ports ports) : ports_(ports) {}

CorrelationId PaymentService::correlation(CorrelationId const& given) const {
    return given.empty() ? CorrelationId::generate(ports_.random) : given;
}

void PaymentService::stop_accepting() noexcept { accepting_.store(false, std::memory_order_release); }

bool PaymentService::accepting() const noexcept { return accepting_.load(std::memory_order_acquire); }

namespace {

// A read the storage could not answer is storage_unavailable, never "not found".
template <class F>
auto unless_storage_fails(F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (StorageFailure const& failure) {
        return decltype(f())(reject(ErrorCode::storage_unavailable, failure.what()));
    }
}

} // namespace

Result<Invoice> PaymentService::create_invoice(CreateInvoice command) {
    if (auto open = refuse_when_stopped(accepting_); !open) return open.error();
    InvoiceId id = command.id ? std::move(*command.id) : InvoiceId::generate(ports_.random);
    auto created = Invoice::create(std::move(id), command.amount, std::move(command.description),
                                   new_event_meta(ports_, correlation(command.correlation_id)));
    if (!created) return created.error();
    Invoice invoice = Invoice::from(*created);
    Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
    changes.events.emplace_back(*created);
    if (auto committed = commit_and_publish(ports_, std::move(changes)); !committed) {
        if (committed.error().code == ErrorCode::already_exists)
            return reject(ErrorCode::already_exists, "invoice " + std::string(invoice.id().str()) + " already exists");
        return committed.error();
    }
    ports_.metrics.invoice_status_changed(std::nullopt, invoice.status());
    ports_.logger.info("invoice created", {{"invoice_id", invoice.id().str()},
                                           {"correlation_id", created->envelope.correlation_id.str()},
                                           {"amount", invoice.amount().minor_units()},
                                           {"currency", invoice.amount().currency().code()}});
    return invoice;
}

PaymentRequestReply PaymentService::request_payment(RequestPayment const& command) {
    // A read the storage could not answer is storage_unavailable, never
    // "not found"; the claim's guard below releases the key.
    try {
        // Before anything is claimed or committed: work accepted now would not be driven.
        if (auto open = refuse_when_stopped(accepting_); !open) return {open.error(), false};
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

        PaymentResult outcome = request_payment_once(command, correlation_id, &key);
        if (replayable(outcome)) {
            // A payment's record was completed in its commit; this stores a
            // refusal, and is a no-op for a record already complete.
            ports_.idempotency.complete(key, outcome, ports_.clock.now());
            release.armed = false;
        }
        return {std::move(outcome), false};
    } catch (StorageFailure const& failure) {
        return {reject(ErrorCode::storage_unavailable, failure.what()), false};
    }
}

PaymentResult PaymentService::request_payment_once(RequestPayment const& command, CorrelationId const& correlation_id,
                                                   IdempotencyKey const* key) {
    return retry_on_conflict([&]() -> PaymentResult {
        // Decided on the stored invoice as it is (in place, in a store that can).
        std::optional<Payment> made;
        InvoiceStatus before{};
        auto decide = [&](Invoice const& invoice) -> Result<Changes> {
            before = invoice.status();
            auto requested = invoice.request_payment(new_attempt(ports_), command.payment_method,
                                                     new_event_meta(ports_, correlation_id));
            if (!requested) return requested.error();
            made = Payment::from(*requested);
            Changes changes{std::nullopt, {Changes::PaymentWrite{*made, 0}}};
            changes.events.emplace_back(std::move(*requested));
            if (key) changes.idempotency = IdempotencyCompletion{*key, *made, ports_.clock.now()};
            return changes;
        };
        auto apply = [](Invoice& invoice, Changes const& decided) {
            invoice.apply(std::get<PaymentRequested>(decided.events.front()));
        };
        if (auto committed = update_and_publish(ports_, command.invoice_id, decide, apply); !committed)
            return committed.error();
        Payment& payment = *made;
        ports_.metrics.payment_requested();
        ports_.metrics.invoice_status_changed(before, InvoiceStatus::processing);
        ports_.logger.info("payment requested", {{"invoice_id", payment.invoice_id().str()},
                                                 {"payment_id", payment.id().str()},
                                                 {"correlation_id", correlation_id.str()},
                                                 {"attempt", payment.attempt()}});
        return std::move(payment);
    });
}

Result<Invoice> PaymentService::resolve_review(ResolveReview const& command) {
    return unless_storage_fails([&]() -> Result<Invoice> {
        if (auto open = refuse_when_stopped(accepting_); !open) return open.error();
        CorrelationId const correlation_id = correlation(command.correlation_id);
        return retry_on_conflict([&]() -> Result<Invoice> {
            auto invoice = ports_.store.invoice(command.invoice_id);
            if (!invoice) return reject(ErrorCode::not_found, "no invoice " + std::string(command.invoice_id.str()));
            if (invoice->status() != InvoiceStatus::needs_review)
                return reject(ErrorCode::invalid_state, "invoice " + std::string(invoice->id().str()) + " is " +
                                                            std::string(to_string(invoice->status())) + ", not NEEDS_REVIEW");
            std::uint64_t const invoice_version = invoice->version();
            InvoiceStatus const before = invoice->status();

            // The other attempts decide what the invoice becomes: one charged keeps
            // it PAID; one whose answer is still owed must settle first, or the
            // invoice could end with a key unresolved.
            std::optional<PaymentId> paid_by_another;
            for (Payment const& other : ports_.store.payments_of(invoice->id())) {
                if (other.id() == invoice->under_review()) continue;
                if (other.status() == PaymentStatus::succeeded && !paid_by_another) paid_by_another = other.id();
                if (other.status() == PaymentStatus::requested || other.status() == PaymentStatus::unknown)
                    return reject(ErrorCode::invalid_state, "attempt " + std::to_string(other.attempt()) +
                                                                " of the invoice has not settled yet; resolve it after");
            }
            auto decided = invoice->resolve_review(command.decision, paid_by_another, new_event_meta(ports_, correlation_id));
            if (!decided) return decided.error();
            auto payment = ports_.store.payment(invoice->under_review());
            if (!payment) return reject(ErrorCode::not_found, "the attempt under review vanished from the store");
            std::uint64_t const payment_version = payment->version();

            // The attempt under review is made to say what the operator found.
            std::vector<Event> published;
            bool const charged = command.decision.charged;
            if (charged && payment->status() != PaymentStatus::succeeded) {
                auto succeeded = payment->confirm_charged(command.decision.reference, invoice->amount(),
                                                          new_event_meta(ports_, correlation_id));
                if (!succeeded) return succeeded.error();
                payment->apply(*succeeded);
                published.emplace_back(std::move(*succeeded));
            } else if (!charged && payment->status() != PaymentStatus::failed) {
                auto failed = payment->confirm_not_charged("an operator found no charge at the provider (or refunded it)",
                                                           new_event_meta(ports_, correlation_id));
                if (!failed) return failed.error();
                payment->apply(*failed);
                published.emplace_back(std::move(*failed));
            }
            std::visit([&](auto& e) { invoice->apply(e); }, *decided);
            std::visit([&](auto& e) { published.emplace_back(std::move(e)); }, *decided);

            Changes changes{Changes::InvoiceWrite{*invoice, invoice_version}, {}};
            bool const payment_changed = payment->version() != payment_version;
            if (payment_changed) changes.payments.push_back({*payment, payment_version});
            changes.events = std::move(published);
            if (auto committed = commit_and_publish(ports_, std::move(changes)); !committed) return committed.error();
            if (payment_changed) {
                if (charged) ports_.metrics.payment_succeeded();
                else ports_.metrics.payment_failed(FailureKind::transient);
            }
            ports_.metrics.invoice_status_changed(before, invoice->status());
            ports_.logger.warn("an operator resolved an invoice", {{"invoice_id", invoice->id().str()},
                                                                   {"payment_id", payment->id().str()},
                                                                   {"correlation_id", correlation_id.str()},
                                                                   {"charged", charged},
                                                                   {"reference", command.decision.reference},
                                                                   {"invoice_status", to_string(invoice->status())}});
            return std::move(*invoice);
        });
    });
}

Result<Invoice> PaymentService::invoice(InvoiceId const& id) const {
    return unless_storage_fails([&]() -> Result<Invoice> {
        if (auto found = ports_.store.invoice(id)) return std::move(*found);
        return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
    });
}

Result<InvoicePage> PaymentService::invoices(InvoiceQuery const& query) const {
    return unless_storage_fails([&]() -> Result<InvoicePage> {
        if (query.limit < 1 || query.limit > InvoiceQuery::max_limit)
            return reject(ErrorCode::invalid_argument, "limit must be between 1 and 1000");
        if (query.after && !ports_.store.invoice(*query.after))
            return reject(ErrorCode::invalid_argument, "no invoice " + std::string(query.after->str()) + " to continue after");
        return ports_.store.invoices(query);
    });
}

Result<std::vector<Payment>> PaymentService::payments_of(InvoiceId const& id) const {
    return unless_storage_fails([&]() -> Result<std::vector<Payment>> {
        if (!ports_.store.invoice(id)) return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
        return ports_.store.payments_of(id);
    });
}

Result<std::vector<Event>> PaymentService::history(InvoiceId const& id) const {
    return unless_storage_fails([&]() -> Result<std::vector<Event>> {
        if (!ports_.store.invoice(id)) return reject(ErrorCode::not_found, "no invoice " + std::string(id.str()));
        return ports_.store.history(id);
    });
}

Result<Payment> PaymentService::payment(PaymentId const& id) const {
    return unless_storage_fails([&]() -> Result<Payment> {
        if (auto found = ports_.store.payment(id)) return std::move(*found);
        return reject(ErrorCode::not_found, "no payment " + std::string(id.str()));
    });
}

} // namespace payments::application
