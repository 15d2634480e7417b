#include <payments/application/payment_processor.hpp>

#include <atomic>
#include <optional>
#include <string>
#include <vector>

namespace payments::application {

using namespace domain;

namespace {

constexpr int commit_attempts = 8;

// One gateway call: whichever of answer and timeout comes first settles it.
// Both callbacks share it, so the attempt is held once, not copied into each.
struct Call {
    PaymentRequested requested;
    Timestamp started;
    std::atomic<bool> settled{false};
    TimerId timeout;

    Call(PaymentRequested const& r, Timestamp s) : requested(r), started(s) {}
    bool settle() { return !settled.exchange(true); }
};

std::string seconds_text(Duration d) {
    auto const ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + "s";
}

} // namespace

Result<std::shared_ptr<PaymentProcessor>> PaymentProcessor::start(Ports ports, ProcessorOptions options) {
    if (auto valid = options.retry.validate(); !valid) return valid.error();
    if (options.gateway_timeout <= Duration::zero())
        return reject(ErrorCode::invalid_argument, "gateway timeout must be positive");
    auto processor = std::make_shared<PaymentProcessor>(Private{}, ports, options);
    // The bus may run the handler after the processor is gone: hold it weakly.
    processor->subscription_ = ports.bus.subscribe<PaymentRequested>(
        "payment-processor", [weak = std::weak_ptr<PaymentProcessor>(processor)](PaymentRequested const& e) {
            if (auto self = weak.lock()) self->on_requested(e);
        });
    return processor;
}

PaymentProcessor::PaymentProcessor(Private, Ports ports, ProcessorOptions options)
    : ports_(ports), options_(options) {}

void PaymentProcessor::stop() { subscription_.reset(); }

std::size_t PaymentProcessor::in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_.size();
}

bool PaymentProcessor::wait_idle(std::chrono::steady_clock::time_point deadline) const {
    std::unique_lock lock(mutex_);
    return idle_.wait_until(lock, deadline, [this] { return in_flight_.empty(); });
}

bool PaymentProcessor::claim(PaymentId const& id) {
    std::lock_guard lock(mutex_);
    return in_flight_.insert(id).second;
}

void PaymentProcessor::release(PaymentId const& id) {
    std::lock_guard lock(mutex_);
    in_flight_.erase(id);
    if (in_flight_.empty()) idle_.notify_all();
}

void PaymentProcessor::on_requested(PaymentRequested const& requested) {
    EventEnvelope const& env = requested.envelope;
    // The claim makes a duplicate delivery that arrives while the call is out
    // see it; the stored status makes one that arrives after it see the outcome.
    if (!claim(env.payment_id)) {
        ports_.metrics.duplicate_delivery();
        ports_.logger.debug("duplicate delivery while charging", {{"payment_id", env.payment_id.str()}});
        return;
    }
    auto payment = ports_.store.payment(env.payment_id);
    auto invoice = ports_.store.invoice(env.invoice_id);
    if (!payment || payment->status() != PaymentStatus::requested || !invoice ||
        invoice->status() != InvoiceStatus::processing || invoice->attempts().back() != env.payment_id) {
        release(env.payment_id);
        ports_.metrics.duplicate_delivery();
        ports_.logger.debug("attempt already settled", {{"payment_id", env.payment_id.str()}});
        return;
    }

    auto call = std::make_shared<Call>(requested, ports_.clock.now());
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    // Armed before the charge, so that an answer given synchronously can cancel it.
    call->timeout = ports_.scheduler.call_at(call->started + options_.gateway_timeout, [weak, call] {
        if (!call->settle()) return;
        if (auto self = weak.lock())
            self->on_outcome(call->requested,
                             ChargeOutcome::failed(FailureKind::unknown_outcome,
                                                   "gateway did not answer within " +
                                                       seconds_text(self->options_.gateway_timeout)),
                             call->started);
    });
    ports_.logger.debug("charging", {{"payment_id", env.payment_id.str()}, {"attempt", env.attempt}});
    ports_.gateway.charge(
        ChargeRequest{env.payment_id, env.invoice_id, requested.gateway_key, requested.amount,
                      requested.payment_method, env.correlation_id},
        [weak, call](ChargeOutcome outcome) {
            if (!call->settle()) return;
            if (auto self = weak.lock()) {
                self->ports_.scheduler.cancel(call->timeout);
                self->on_outcome(call->requested, outcome, call->started);
            }
        });
}

void PaymentProcessor::on_outcome(PaymentRequested const& requested, ChargeOutcome const& outcome, Timestamp started) {
    ports_.metrics.gateway_latency(ports_.clock.now() - started);
    if (must_verify(requested, outcome)) {
        verify(requested); // the claim stays until the answer is settled
        return;
    }
    settle_and_release(requested, outcome);
}

bool PaymentProcessor::must_verify(PaymentRequested const& requested, ChargeOutcome const& outcome) const {
    if (outcome.succeeded()) return false;
    auto invoice = ports_.store.invoice(requested.envelope.invoice_id);
    return invoice && invoice->current_attempt() == requested.envelope.attempt &&
           invoice->must_verify(outcome.failure->kind, options_.retry);
}

void PaymentProcessor::verify(PaymentRequested const& requested) {
    ports_.metrics.outcome_verification();
    ports_.logger.info("verifying an unknown outcome", {{"payment_id", requested.envelope.payment_id.str()},
                                                        {"correlation_id", requested.envelope.correlation_id.str()}});
    auto call = std::make_shared<Call>(requested, ports_.clock.now());
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    // Unanswered: ask again after the longest backoff; the attempt stays claimed meanwhile.
    call->timeout = ports_.scheduler.call_at(call->started + options_.gateway_timeout, [weak, call] {
        if (!call->settle()) return;
        if (auto self = weak.lock())
            self->ports_.scheduler.call_at(self->ports_.clock.now() + self->options_.retry.cap, [weak, call] {
                if (auto again = weak.lock()) again->verify(call->requested);
            });
    });
    ports_.gateway.lookup(requested.gateway_key, [weak, call](std::optional<ChargeOutcome> found) {
        if (!call->settle()) return;
        if (auto self = weak.lock()) {
            self->ports_.scheduler.cancel(call->timeout);
            // No record means nothing was charged: a definitive failure.
            self->settle_and_release(call->requested,
                                     found ? *found
                                           : ChargeOutcome::failed(FailureKind::transient,
                                                                   "gateway did not answer and holds no charge for "
                                                                   "the attempt"));
        }
    });
}

void PaymentProcessor::settle_and_release(PaymentRequested const& requested, ChargeOutcome const& outcome) {
    if (auto settled = settle(requested, outcome); !settled)
        ports_.logger.error("could not record a gateway outcome",
                            {{"payment_id", requested.envelope.payment_id.str()},
                             {"invoice_id", requested.envelope.invoice_id.str()},
                             {"correlation_id", requested.envelope.correlation_id.str()},
                             {"error", to_string(settled.error().code)},
                             {"detail", settled.error().detail}});
    release(requested.envelope.payment_id);
}

namespace {

// What one gateway outcome does to an attempt and its invoice.
struct Settlement {
    std::vector<Event> published;
    std::optional<PaymentRequested> retry; // the next attempt, to schedule
    Result<void> invoice_decision;         // an error: the invoice did not accept the outcome
};

// Decides on the aggregates as loaded and applies what it decided to them.
Result<Settlement> decide(Ports const& ports, RetryPolicy const& policy, Payment& payment, Invoice& invoice,
                          ChargeOutcome const& outcome, CorrelationId const& correlation_id) {
    auto meta = [&] { return new_event_meta(ports, correlation_id); };
    Settlement settlement;
    if (outcome.succeeded()) {
        auto succeeded = payment.succeed(outcome.reference, meta());
        if (!succeeded) return succeeded.error();
        payment.apply(*succeeded);
        settlement.published.emplace_back(*succeeded);
        if (auto paid = invoice.settle_success(*succeeded, meta())) {
            invoice.apply(*paid);
            settlement.published.emplace_back(std::move(*paid));
        } else {
            settlement.invoice_decision = paid.error();
        }
        return settlement;
    }
    auto failed = payment.fail(*outcome.failure, meta());
    if (!failed) return failed.error();
    payment.apply(*failed);
    settlement.published.emplace_back(*failed);
    auto next = invoice.settle_failure(*failed, policy, ports.random, PaymentId::generate(ports.random), meta());
    if (!next) {
        settlement.invoice_decision = next.error();
        return settlement;
    }
    invoice.apply(*failed);
    if (auto* again = std::get_if<PaymentRequested>(&*next)) {
        invoice.apply(*again);
        settlement.retry = std::move(*again);
    } else {
        auto& gave_up = std::get<InvoiceFailed>(*next);
        invoice.apply(gave_up);
        settlement.published.emplace_back(std::move(gave_up));
    }
    return settlement;
}

} // namespace

Result<void> PaymentProcessor::settle(PaymentRequested const& requested, ChargeOutcome const& outcome) {
    EventEnvelope const& env = requested.envelope;
    for (int round = 0; round < commit_attempts; ++round) {
        auto payment = ports_.store.payment(env.payment_id);
        auto invoice = ports_.store.invoice(env.invoice_id);
        if (!payment || !invoice) return reject(ErrorCode::not_found, "attempt vanished from the store");
        std::uint64_t const payment_version = payment->version();
        std::uint64_t const invoice_version = invoice->version();

        auto settlement = decide(ports_, options_.retry, *payment, *invoice, outcome, env.correlation_id);
        if (!settlement) return settlement.error();

        // An outcome the invoice no longer expects is still recorded on its
        // payment: a charge must never be lost, even one that should not have happened.
        Changes changes;
        if (settlement->invoice_decision) changes.invoice = Changes::InvoiceWrite{*invoice, invoice_version};
        changes.payments.push_back({*payment, payment_version});
        if (settlement->retry) changes.payments.push_back({Payment::from(*settlement->retry), 0});
        if (auto committed = ports_.store.commit(std::move(changes)); !committed) {
            if (committed.error().code == ErrorCode::conflict) continue;
            return committed.error();
        }

        report(requested, outcome, *invoice, settlement->invoice_decision.has_value());
        for (auto& event : settlement->published) ports_.bus.publish(std::move(event));
        if (settlement->retry) {
            ports_.metrics.retry_scheduled();
            ports_.bus.schedule(*settlement->retry, settlement->retry->not_before);
        }
        return settlement->invoice_decision;
    }
    return reject(ErrorCode::conflict, "invoice " + std::string(env.invoice_id.str()) + " kept changing while settling");
}

void PaymentProcessor::report(PaymentRequested const& requested, ChargeOutcome const& outcome, Invoice const& invoice,
                              bool invoice_settled) {
    if (outcome.succeeded()) {
        ports_.metrics.payment_succeeded();
    } else {
        ports_.metrics.payment_failed(outcome.failure->kind);
    }
    if (invoice_settled && invoice.status() != InvoiceStatus::processing)
        ports_.metrics.invoice_status_changed(InvoiceStatus::processing, invoice.status());
    EventEnvelope const& env = requested.envelope;
    ports_.logger.info(outcome.succeeded() ? "payment succeeded" : "payment failed",
                       {{"invoice_id", env.invoice_id.str()},
                        {"payment_id", env.payment_id.str()},
                        {"correlation_id", env.correlation_id.str()},
                        {"attempt", env.attempt},
                        {"failure", outcome.succeeded() ? std::string_view("none") : to_string(outcome.failure->kind)},
                        {"invoice_status", to_string(invoice.status())}});
}

} // namespace payments::application
