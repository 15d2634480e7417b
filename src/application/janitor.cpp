// The processor's janitor, and its account of unsettled work: the parts that
// read the store for attempts nothing drives any more.
#include <payments/application/payment_processor.hpp>

#include "settlement.hpp"

#include <algorithm>
#include <unordered_set>

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
        } catch (std::exception const& e) {
            self->port_threw("a janitor round", PaymentId{}, e.what()); // and the round comes again
        } catch (...) {
            self->port_threw("a janitor round", PaymentId{}, "an exception of unknown type");
        }
    });
}

// An attempt due this long ago should have reached the gateway by now.
Duration PaymentProcessor::janitor_grace() const { return options_.gateway_timeout + options_.janitor_interval; }

std::size_t PaymentProcessor::run_janitor() { return redrive(janitor_grace()).redriven; }

namespace {

// The invoices whose last attempt may be left undriven: PROCESSING ones, and
// those in review (an attempt sent before the review began is owed its answer
// all the same: money may have been taken under its key).
constexpr InvoiceStatus redriven_statuses[] = {InvoiceStatus::processing, InvoiceStatus::needs_review};

} // namespace

// A janitor's round: every attempt found is driven from the round itself.
PaymentProcessor::Round PaymentProcessor::redrive(Duration grace) {
    Round round;
    if (stopped()) return round;
    if (recovery_pending()) {
        // Driven now, what recovery has yet to start would all go out at
        // once: its bound would hold for one janitor interval only. A pump
        // that a refused post stopped starts again here.
        pump_recovery();
        round.work_left = true;
        return round;
    }
    // Only what a round can act on: the attempts still open, not an
    // operator's (review16 B3: it paged every NEEDS_REVIEW invoice, reading
    // each one's attempt, every round). A PROCESSING invoice always has one.
    std::optional<PaymentId> after;
    // Marks left for this janitor whose attempt the round does not find owed
    // an answer (settled by another process, by a notice, or now an
    // operator's): nothing here verifies them any more (review 24, F7).
    std::unordered_set<PaymentId> unowed = janitor_marks();
    for (;;) {
        OpenAttemptPage page = ports_.store.open_attempts(after, InvoiceQuery::max_limit);
        for (auto const& [invoice, payment] : page.data) {
            if (invoice.attempts().empty() || invoice.attempts().back() != payment.id()) continue;
            if (!owes_an_answer(invoice, payment)) continue;
            unowed.erase(payment.id());
            round.work_left = true;
            if (auto found = redrive_of(invoice, payment, grace)) {
                drive(*found);
                ++round.redriven;
            }
        }
        if (!page.next) break;
        after = page.next;
    }
    forget_janitor_marks(unowed);
    return round;
}

std::unordered_set<PaymentId> PaymentProcessor::janitor_marks() const {
    std::unordered_set<PaymentId> marks;
    std::lock_guard lock(mutex_);
    for (auto const& [id, state] : verifying_)
        if (state == verify_by_janitor) marks.insert(id);
    return marks;
}

void PaymentProcessor::forget_janitor_marks(std::unordered_set<PaymentId> const& ids) {
    if (ids.empty()) return;
    std::lock_guard lock(mutex_);
    for (PaymentId const& id : ids)
        if (auto const mark = verifying_.find(id); mark != verifying_.end() && mark->second == verify_by_janitor)
            verifying_.erase(mark);
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

std::optional<PaymentProcessor::Redrive> PaymentProcessor::redrive_of(Invoice const& invoice, Payment const& payment,
                                                                      Duration grace) {
    Timestamp const now = ports_.clock.now();
    if (claimed(payment.id()) || deferred(payment.id())) return std::nullopt;
    bool const stalled = payment.status() == PaymentStatus::requested && payment.not_before() + grace <= now;
    if (!stalled && !payment.unresolved()) return std::nullopt;
    // Another live process drives this invoice (a shared store): not ours to
    // touch. Asked of the store itself (lease(), not lease_to_drive()): the
    // janitor comes late, when memory's view of the lease is least sure.
    if (!ports_.store.lease(invoice.id())) {
        // Its verification is that process's: a mark left for this janitor goes (review 24, F7).
        forget_janitor_marks({payment.id()});
        return std::nullopt;
    }
    auto request = request_of(payment, new_event_meta(ports_, payment.correlation_id()));
    if (stalled) {
        ports_.metrics.janitor_redrove(JanitorFinding::stalled_attempt);
        ports_.logger.warn("janitor: re-driving a stalled attempt", {{"payment_id", payment.id().str()}});
        return Redrive{std::move(request), false};
    }
    {
        std::lock_guard lock(mutex_);
        auto const verifying = verifying_.find(payment.id());
        if (verifying != verifying_.end()) {
            if (verifying->second != verify_by_janitor) return std::nullopt;
            verifying_.erase(verifying); // left to this round: its verification starts below
        }
    }
    ports_.metrics.janitor_redrove(JanitorFinding::unverified);
    ports_.logger.warn("janitor: verifying an unknown outcome nothing was verifying", {{"payment_id", payment.id().str()}});
    return Redrive{std::move(request), true};
}

// To this processor alone: never published, so no subscriber of the
// application sees a request that was never made.
void PaymentProcessor::drive(Redrive const& redrive) {
    if (redrive.verify) start_verifying(redrive.request);
    else on_requested(redrive.request);
}

// At start nothing is driving anything yet: every due attempt is stalled.
// The first page is read here (a store that cannot be read throws); the
// rest once what it found has started.
std::size_t PaymentProcessor::recover() {
    {
        std::lock_guard lock(mutex_);
        if (stopped_) return 0;
        recovery_.status = 0;
        recovery_.after.reset();
        recovery_.done = false;
        recovery_.scanning = true;
    }
    std::size_t found = 0;
    try {
        found = scan_recovery_page();
    } catch (StorageFailure const&) {
        std::lock_guard lock(mutex_);
        recovery_.scanning = false;
        recovery_.done = true;
        throw;
    }
    {
        std::lock_guard lock(mutex_);
        recovery_.scanning = false;
    }
    pump_recovery();
    return found;
}

// Reads pages until one holds an attempt to drive, or none is left.
std::size_t PaymentProcessor::scan_recovery_page() {
    for (;;) {
        InvoiceQuery query{.limit = options_.recovery_page};
        {
            std::lock_guard lock(mutex_);
            if (recovery_.done) return 0;
            query.status = redriven_statuses[recovery_.status];
            query.after = recovery_.after;
        }
        InvoicePage page = ports_.store.invoices(query);
        std::vector<Redrive> found;
        for (Invoice const& invoice : page.data) {
            auto payment = ports_.store.payment(invoice.attempts().back());
            if (!payment || !owes_an_answer(invoice, *payment)) continue;
            if (auto redrive = redrive_of(invoice, *payment, Duration::zero())) found.push_back(std::move(*redrive));
        }
        bool done = false;
        {
            std::lock_guard lock(mutex_);
            recovery_.after = page.next;
            if (!page.next && ++recovery_.status == std::size(redriven_statuses)) recovery_.done = true;
            done = recovery_.done;
            for (auto& redrive : found) {
                PaymentId const id = redrive.request.envelope.payment_id;
                if (recovery_.running.contains(id)) continue;
                if (!recovery_.queued.insert(id).second) {
                    // A copy the bus queued, read REQUESTED then: the scan read it
                    // later, and UNKNOWN (another process timed it out) is
                    // verified, not dropped as settled when its turn comes
                    // (review 22, G5).
                    if (redrive.verify) upgrade_to_verify(id);
                    continue;
                }
                recovery_.found.push_back(std::move(redrive));
            }
        }
        if (!found.empty()) arm_janitor();
        if (!found.empty() || done) return found.size();
    }
}

// The next page, read off the caller's thread (Scheduler::post); a store that
// cannot be read ends recovery, and the janitor's rounds find the rest.
void PaymentProcessor::scan_recovery() noexcept {
    bool failed = false;
    try {
        scan_recovery_page();
    } catch (StorageFailure const& failure) {
        ports_.logger.warn("recovery: the store cannot be read; the janitor re-drives the rest",
                           {{"error", failure.what()}});
        failed = true;
    } catch (std::exception const& e) {
        port_threw("recovery's page", PaymentId{}, e.what());
        failed = true;
    } catch (...) {
        port_threw("recovery's page", PaymentId{}, "an exception of unknown type");
        failed = true;
    }
    if (failed) {
        std::lock_guard lock(mutex_);
        recovery_.done = true;
    }
    {
        std::lock_guard lock(mutex_);
        recovery_.scanning = false;
    }
    arm_janitor();
    pump_recovery();
}

// Called under mutex_.
void PaymentProcessor::upgrade_to_verify(PaymentId const& id) {
    auto const queued = std::find_if(recovery_.found.begin(), recovery_.found.end(), [&](Redrive const& r) {
        return r.request.envelope.payment_id == id;
    });
    if (queued != recovery_.found.end()) queued->verify = true;
}

bool PaymentProcessor::recovery_pending() const {
    std::lock_guard lock(mutex_);
    return !recovery_.done || !recovery_.found.empty();
}

// Queued behind what recovery found, once: a copy of one queued already is
// dropped. So is one that finds the queue full (review 21, F3: the outbox at
// start can deliver every attempt an earlier run left, faster than they are
// driven). Nothing is lost by the drop: the caller read the attempt REQUESTED
// and its invoice PROCESSING in the store, where recover()'s scan (if it has
// not passed it yet) or the janitor's next round finds it again.
bool PaymentProcessor::queue_for_recovery(PaymentRequested const& requested) {
    PaymentId const& id = requested.envelope.payment_id;
    std::lock_guard lock(mutex_);
    if (stopped_ || recovery_.running.contains(id)) return false;
    if (recovery_.found.size() < options_.recovery_page && recovery_.queued.insert(id).second)
        recovery_.found.push_back(Redrive{requested, false});
    return true;
}

std::size_t PaymentProcessor::recovery_queued() const {
    std::lock_guard lock(mutex_);
    return recovery_.found.size();
}

// Starts what recovery found while fewer than recovery_in_flight of its
// attempts hold a claim, and reads the next page once all have started.
// Every start is posted (Scheduler::post): this runs where a claim is released.
// One pump at a time; it loops until nothing more can start, deciding under
// the lock, so a release that comes meanwhile is never missed.
void PaymentProcessor::pump_recovery() {
    {
        std::lock_guard lock(mutex_);
        if (std::exchange(recovery_.pumping, true)) return;
    }
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    for (;;) {
        std::optional<Redrive> next;
        {
            std::lock_guard lock(mutex_);
            bool const room = recovery_.running.size() < options_.recovery_in_flight;
            if (!stopped_ && room && !recovery_.found.empty()) {
                next = std::move(recovery_.found.front());
                recovery_.found.pop_front();
                recovery_.queued.erase(next->request.envelope.payment_id);
                recovery_.running.insert(next->request.envelope.payment_id);
            } else if (!stopped_ && recovery_.found.empty() && !recovery_.done && !recovery_.scanning) {
                recovery_.scanning = true;
            } else {
                recovery_.pumping = false;
                return;
            }
        }
        try {
            if (next) {
                ports_.scheduler.post([weak, redrive = *next] {
                    if (auto self = weak.lock()) self->run_recovered(redrive);
                });
            } else {
                ports_.scheduler.post([weak] {
                    if (auto self = weak.lock()) self->scan_recovery();
                });
            }
        } catch (...) {
            // Refused (a scheduler shutting down): nothing started, so the attempt goes back to the front
            // and the pump stops; the janitor's next round pumps again.
            PaymentId const id = next ? next->request.envelope.payment_id : PaymentId{};
            {
                std::lock_guard lock(mutex_);
                if (next) {
                    recovery_.running.erase(id);
                    recovery_.queued.insert(id);
                    recovery_.found.push_front(std::move(*next));
                } else {
                    recovery_.scanning = false;
                }
                recovery_.pumping = false;
            }
            port_threw("recovery's pump", id, "the scheduler refused a post");
            try {
                arm_janitor();
            } catch (...) {
                port_threw("recovery's pump", id, "the janitor could not be armed either");
            }
            return;
        }
    }
}

// Off the bus, nothing catches what a read throws: the janitor's next round
// finds the attempt again. An attempt that holds no claim once started (it
// was settled, or is driven elsewhere) gives its place up at once.
void PaymentProcessor::run_recovered(Redrive const& redrive) noexcept {
    PaymentId const& id = redrive.request.envelope.payment_id;
    try {
        drive(redrive);
    } catch (StorageFailure const& failure) {
        ports_.logger.warn("recovery: the store cannot be read; the janitor re-drives the attempt later",
                           {{"payment_id", id.str()}, {"error", failure.what()}});
        arm_janitor();
    } catch (std::exception const& e) {
        port_threw("recovery", id, e.what());
    } catch (...) {
        port_threw("recovery", id, "an exception of unknown type");
    }
    give_up_recovery_place(id);
}

// A port threw what it should not (a bug in an adapter, bad_alloc): ended
// here, as the bus and the scheduler end it, never by std::terminate: every
// start would recover the same attempt and end again (review18 B-3). The
// attempt stays as the store has it, for the janitor; a call already out
// still answers or times out.
void PaymentProcessor::port_threw(std::string_view where, PaymentId const& id, std::string_view what) noexcept {
    try {
        ports_.logger.error("a port threw; the janitor re-drives the attempt later",
                            {{"where", where}, {"payment_id", id.str()}, {"error", what}});
        arm_janitor();
    } catch (...) { // nothing more can be done; the janitor, if armed, comes all the same
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
