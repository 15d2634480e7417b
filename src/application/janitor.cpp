// The processor's janitor, and its account of unsettled work: the parts that
// read the store for attempts nothing drives any more.
#include <payments/application/payment_processor.hpp>

#include "settlement.hpp"

namespace payments::application {

using namespace domain;

// The janitor: a scheduled round that exists only while some attempt may
// need it (an invoice PROCESSING, or one in review whose last attempt has not
// settled), so an idle system has no timer running.
void PaymentProcessor::arm_janitor() {
    if (options_.janitor_interval == Duration::zero()) return;
    {
        std::lock_guard lock(mutex_);
        if (stopped_ || std::exchange(janitor_armed_, true)) return;
    }
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    ports_.scheduler.call_at(ports_.clock.now() + options_.janitor_interval, [weak] {
        auto self = weak.lock();
        if (!self) return;
        {
            std::lock_guard lock(self->mutex_);
            self->janitor_armed_ = false;
        }
        try {
            Round const round = self->redrive(self->janitor_grace());
            if (self->options_.janitor_when_idle || round.work_left) self->arm_janitor();
        } catch (StorageFailure const& failure) {
            // The store cannot be read now: the round is not done, so it comes again.
            self->ports_.logger.warn("janitor: the store cannot be read; the round is tried again",
                                     {{"error", failure.what()}});
            self->arm_janitor();
        }
    });
}

// An attempt due this long ago should have reached the gateway by now.
Duration PaymentProcessor::janitor_grace() const { return options_.gateway_timeout + options_.janitor_interval; }

std::size_t PaymentProcessor::run_janitor() { return redrive(janitor_grace()).redriven; }

// At start nothing is driving anything yet: every due attempt is stalled.
std::size_t PaymentProcessor::recover() { return redrive(Duration::zero(), true).redriven; }

// The invoices whose last attempt may be left undriven: PROCESSING ones, and
// those in review (an attempt sent before the review began is owed its answer
// all the same: money may have been taken under its key).
PaymentProcessor::Round PaymentProcessor::redrive(Duration grace, bool at_start) {
    Round round;
    if (stopped()) return round;
    for (InvoiceStatus status : {InvoiceStatus::processing, InvoiceStatus::needs_review}) {
        InvoiceQuery query{.status = status, .limit = InvoiceQuery::max_limit};
        for (;;) {
            InvoicePage page = ports_.store.invoices(query);
            for (Invoice const& invoice : page.data) {
                if (status == InvoiceStatus::processing) round.work_left = true;
                auto payment = ports_.store.payment(invoice.attempts().back());
                if (!payment || !owes_an_answer(invoice, *payment)) continue;
                round.work_left = true;
                if (redrive_attempt(invoice, *payment, grace, at_start)) ++round.redriven;
            }
            if (!page.next) break;
            query.after = page.next;
        }
    }
    return round;
}

// REQUESTED (sent or not, it is settled either way), or UNKNOWN and not yet
// the operator's. An UNKNOWN attempt of a PROCESSING invoice is always owed:
// verify() escalates it once past the verification limit, so it is never left
// PROCESSING for ever. One an operator has (the attempt under review, put
// there by escalate()) is owed no more look-ups.
bool PaymentProcessor::owes_an_answer(Invoice const& invoice, Payment const& payment) const {
    if (payment.status() == PaymentStatus::requested) return true;
    if (!payment.unresolved()) return false;
    return invoice.status() == InvoiceStatus::processing || invoice.under_review() != payment.id();
}

bool PaymentProcessor::redrive_attempt(Invoice const& invoice, Payment const& payment, Duration grace, bool at_start) {
    Timestamp const now = ports_.clock.now();
    if (claimed(payment.id()) || deferred(payment.id())) return false;
    bool const stalled = payment.status() == PaymentStatus::requested && payment.not_before() + grace <= now;
    if (!stalled && !payment.unresolved()) return false;
    // Another live process drives this invoice (a shared store): not ours to touch.
    if (!ports_.store.lease(invoice.id())) return false;
    auto const request = request_of(payment, new_event_meta(ports_, payment.correlation_id()));
    if (stalled) {
        ports_.metrics.janitor_redrove(JanitorFinding::stalled_attempt);
        ports_.logger.warn("janitor: re-driving a stalled attempt", {{"payment_id", payment.id().str()}});
        if (!at_start) {
            on_requested(request);
            return true;
        }
        // At start, to this processor alone (never published: no subscriber
        // of the application may see a request that was never made), on the
        // engine's threads at once: each waits for its commit, and many
        // waiting share transactions.
        std::weak_ptr<PaymentProcessor> weak = weak_from_this();
        post(ports_, [weak, request] {
            if (auto self = weak.lock()) self->run_recovered(request);
        });
        return true;
    }
    {
        std::lock_guard lock(mutex_);
        if (verifying_.contains(payment.id())) return false;
    }
    ports_.metrics.janitor_redrove(JanitorFinding::unverified);
    ports_.logger.warn("janitor: verifying an unknown outcome nothing was verifying", {{"payment_id", payment.id().str()}});
    start_verifying(request);
    return true;
}

// Off the bus, nothing catches what a read throws: the janitor's next round
// finds the attempt again.
void PaymentProcessor::run_recovered(PaymentRequested const& request) noexcept {
    try {
        on_requested(request);
    } catch (StorageFailure const& failure) {
        ports_.logger.warn("recovery: the store cannot be read; the janitor re-drives the attempt later",
                           {{"payment_id", request.envelope.payment_id.str()}, {"error", failure.what()}});
        arm_janitor();
    }
}

UnsettledWork PaymentProcessor::unsettled() const {
    UnsettledWork work;
    for (InvoiceStatus status : {InvoiceStatus::processing, InvoiceStatus::needs_review}) {
        InvoiceQuery query{.status = status, .limit = InvoiceQuery::max_limit};
        for (;;) {
            InvoicePage page = ports_.store.invoices(query);
            for (Invoice const& invoice : page.data) {
                if (status == InvoiceStatus::needs_review) {
                    ++work.needs_review;
                    continue;
                }
                auto payment = ports_.store.payment(invoice.attempts().back());
                if (!payment) continue;
                if (claimed(payment->id())) ++work.at_gateway;
                else if (payment->unresolved()) ++work.unknown;
                else if (payment->status() == PaymentStatus::requested) ++work.retry_due;
            }
            if (!page.next) break;
            query.after = page.next;
        }
    }
    return work;
}

} // namespace payments::application
