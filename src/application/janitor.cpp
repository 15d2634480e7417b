// The processor's janitor, and its account of unsettled work: the parts that
// read the store for attempts nothing drives any more.
#include <payments/application/payment_processor.hpp>

#include "settlement.hpp"

namespace payments::application {

using namespace domain;

// The janitor: a scheduled round that exists only while some invoice is
// PROCESSING, so an idle system has no timer running.
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
            self->run_janitor();
            InvoiceQuery const any_processing{.status = InvoiceStatus::processing, .limit = 1};
            if (self->options_.janitor_when_idle || !self->ports_.store.invoices(any_processing).data.empty())
                self->arm_janitor();
        } catch (StorageFailure const& failure) {
            // The store cannot be read now: the round is not done, so it comes again.
            self->ports_.logger.warn("janitor: the store cannot be read; the round is tried again",
                                     {{"error", failure.what()}});
            self->arm_janitor();
        }
    });
}

std::size_t PaymentProcessor::run_janitor() {
    // An attempt due this long ago should have reached the gateway by now.
    return redrive(options_.gateway_timeout + options_.janitor_interval);
}

// At start nothing is driving anything yet: every due attempt is stalled.
std::size_t PaymentProcessor::recover() { return redrive(Duration::zero(), true); }

std::size_t PaymentProcessor::redrive(Duration grace, bool at_start) {
    if (stopped()) return 0;
    std::size_t redriven = 0;
    Timestamp const now = ports_.clock.now();
    InvoiceQuery query{.status = InvoiceStatus::processing, .limit = InvoiceQuery::max_limit};
    for (;;) {
        InvoicePage page = ports_.store.invoices(query);
        for (Invoice const& invoice : page.data) {
            auto payment = ports_.store.payment(invoice.attempts().back());
            if (!payment || claimed(payment->id()) || deferred(payment->id())) continue;
            bool const stalled = payment->status() == PaymentStatus::requested && payment->not_before() + grace <= now;
            if (!stalled && !payment->unresolved()) continue;
            // Another live process drives this invoice (a shared store): not ours to touch.
            if (!ports_.store.lease(invoice.id())) continue;
            auto const request = request_of(*payment, new_event_meta(ports_, payment->correlation_id()));
            if (stalled) {
                ports_.metrics.janitor_redrove(JanitorFinding::stalled_attempt);
                ports_.logger.warn("janitor: re-driving a stalled attempt", {{"payment_id", payment->id().str()}});
                ++redriven;
                if (!at_start) {
                    on_requested(request);
                    continue;
                }
                // At start, through the bus to this processor's own handler:
                // the attempts run on the engine's threads at once (each waits
                // for its commit, and many waiting share transactions), as a
                // republished event would. The handler is idempotent.
                if (!ports_.bus.publish(request)) on_requested(request);
            } else if (payment->unresolved()) {
                bool verifying = false;
                {
                    std::lock_guard lock(mutex_);
                    verifying = verifying_.contains(payment->id());
                }
                if (verifying) continue;
                ports_.metrics.janitor_redrove(JanitorFinding::unverified);
                ports_.logger.warn("janitor: verifying an unknown outcome nothing was verifying",
                                   {{"payment_id", payment->id().str()}});
                ++redriven;
                start_verifying(request);
            }
        }
        if (!page.next) return redriven;
        query.after = page.next;
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
