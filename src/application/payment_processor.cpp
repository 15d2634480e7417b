#include <payments/application/payment_processor.hpp>

#include "commit_retry.hpp"
#include "outbox.hpp"
#include "settlement.hpp"

#include <algorithm>
#include <atomic>
#include <string>

namespace payments::application {

using namespace domain;

// One gateway call: whichever of answer and timeout comes first settles it;
// an answer that comes after the timeout is late, and still used.
struct PaymentProcessor::Call {
    PaymentRequested requested;
    Timestamp started;
    Gateways::Entry* gateway = nullptr; // the charge's, whose breaker counts its answer
    std::uint64_t generation = 0;       // the breaker's permit
    std::atomic<bool> timed_out{false};
    TimerId timeout;

    Call(PaymentRequested const& r, Timestamp s) : requested(r), started(s) {}
    // True for the first of answer and timeout.
    bool first() { return !timed_out.exchange(true); }
};

template <class Fn>
void PaymentProcessor::contain(std::string_view where, PaymentId const& id, Fn&& fn) noexcept {
    try {
        std::forward<Fn>(fn)();
    } catch (std::exception const& e) {
        port_threw(where, id, e.what());
    } catch (...) {
        port_threw(where, id, "an exception of unknown type");
    }
}

namespace {

std::string seconds_text(Duration d) {
    auto const ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + "s";
}

} // namespace

Result<void> ProcessorOptions::validate() const {
    if (auto valid = retry.validate(); !valid) return valid.error();
    if (gateway_timeout <= Duration::zero() || gateway_timeout > std::chrono::hours(1))
        return reject(ErrorCode::invalid_argument, "gateway timeout must be positive and at most an hour");
    if (settle_window < Duration::zero() || settle_window > std::chrono::hours(24 * 7))
        return reject(ErrorCode::invalid_argument, "settle window must be between 0 and 7 days");
    if (verification_limit <= Duration::zero() || verification_limit > std::chrono::hours(24 * 365))
        return reject(ErrorCode::invalid_argument, "verification limit must be positive and at most a year");
    if (provider_key_retention <= Duration::zero() || provider_key_retention > std::chrono::hours(24 * 365))
        return reject(ErrorCode::invalid_argument, "provider key retention must be positive and at most a year");
    if (janitor_interval < Duration::zero() || janitor_interval > std::chrono::hours(24))
        return reject(ErrorCode::invalid_argument, "janitor interval must be between 0 (off) and 24 hours");
    if (over_limit_wait <= Duration::zero() || over_limit_wait > std::chrono::minutes(1))
        return reject(ErrorCode::invalid_argument, "over-limit wait must be positive and at most a minute");
    if (recovery_page == 0 || recovery_page > InvoiceQuery::max_limit)
        return reject(ErrorCode::invalid_argument, "recovery page must be between 1 and 1000 invoices");
    if (recovery_in_flight == 0 || recovery_in_flight > 10'000)
        return reject(ErrorCode::invalid_argument, "recovery in flight must be between 1 and 10000 attempts");
    return {};
}

Result<std::shared_ptr<PaymentProcessor>> PaymentProcessor::start(Ports ports, ProcessorOptions options) {
    if (auto valid = options.validate(); !valid) return valid.error();
    auto processor = std::make_shared<PaymentProcessor>(Private{}, ports, options);
    // The bus may run the handler after the processor is gone: hold it weakly.
    processor->subscription_ = ports.bus.subscribe<PaymentRequested>(
        "payment-processor", [weak = std::weak_ptr<PaymentProcessor>(processor)](PaymentRequested const& e) {
            if (auto self = weak.lock()) self->on_requested(e);
        });
    for (std::size_t i = 0; i < ports.gateways.size(); ++i)
        ports.metrics.gateway_circuit(ports.gateways[i].name, ports.gateways[i].breaker.state(ports.clock.now()));
    // Work left PROCESSING by an earlier run (a durable store) is found at the first round.
    processor->arm_janitor();
    return processor;
}

PaymentProcessor::PaymentProcessor(Private, Ports ports, ProcessorOptions options)
    : ports_(ports), options_(options) {}

void PaymentProcessor::stop() {
    {
        std::lock_guard lock(mutex_);
        if (std::exchange(stopped_, true)) return; // the first caller alone touches the subscription
    }
    subscription_.reset();
}

bool PaymentProcessor::stopped() const {
    std::lock_guard lock(mutex_);
    return stopped_;
}

std::size_t PaymentProcessor::in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_.size();
}

std::size_t PaymentProcessor::verifying() const {
    std::lock_guard lock(mutex_);
    return verifying_.size();
}

bool PaymentProcessor::wait_idle(std::chrono::steady_clock::time_point deadline) const {
    std::unique_lock lock(mutex_);
    return idle_.wait_until(lock, deadline, [this] { return in_flight_.empty(); });
}

bool PaymentProcessor::wait_commits(std::chrono::steady_clock::time_point deadline) const {
    std::unique_lock lock(mutex_);
    return idle_.wait_until(lock, deadline, [this] { return committing_ == 0; });
}

void PaymentProcessor::commit_answered() {
    std::lock_guard lock(mutex_);
    if (--committing_ == 0) idle_.notify_all();
}

bool PaymentProcessor::claim(PaymentId const& id) {
    std::lock_guard lock(mutex_);
    return in_flight_.insert(id).second;
}

void PaymentProcessor::release(PaymentId const& id) {
    bool recovered = false;
    {
        std::lock_guard lock(mutex_);
        in_flight_.erase(id);
        recovered = recovery_.running.erase(id) != 0;
        if (in_flight_.empty()) idle_.notify_all();
    }
    if (recovered) pump_recovery(); // its place goes to the next one recovery found
}

bool PaymentProcessor::claimed(PaymentId const& id) const {
    std::lock_guard lock(mutex_);
    return in_flight_.contains(id);
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
    // A port that throws must not leave the attempt claimed for ever.
    ClaimGuard guard{*this, env.payment_id};
    auto payment = ports_.store.payment(env.payment_id);
    auto invoice = ports_.store.invoice(env.invoice_id);
    if (!payment || payment->status() != PaymentStatus::requested || !invoice ||
        invoice->attempts().back() != env.payment_id) {
        ports_.metrics.duplicate_delivery();
        ports_.logger.debug("attempt already settled", {{"payment_id", env.payment_id.str()}});
        return;
    }
    arm_janitor();
    // Another live process took the invoice over (this one stalled, or lost
    // PostgreSQL for longer than its lease): it drives the attempt now, and
    // this process neither sends nor reroutes it. Or this process's liveness
    // renewals fail: its lease may lapse while a charge is out. Or the
    // store's writer is behind: the answer could not be recorded. The attempt
    // waits for the janitor (here or elsewhere).
    if (!ports_.store.lease_to_drive(env.invoice_id, env.payment_id)) {
        ports_.logger.info("attempt not driven here: another process holds its invoice, this one's liveness "
                           "renewals are failing, or its store's writer is behind",
                           {{"payment_id", env.payment_id.str()}});
        return;
    }
    if (invoice->status() != InvoiceStatus::processing) return settle_unsendable(requested, *payment, guard);

    // The attempt goes to the gateway recorded on it, never another: it may
    // have been sent there before (a re-driven attempt, an earlier process).
    Timestamp const now = ports_.clock.now();
    Gateways::Entry* gateway = ports_.gateways.find(payment->gateway());
    if (!gateway) {
        ports_.logger.error("an attempt names a gateway this wiring does not have",
                            {{"payment_id", env.payment_id.str()}, {"gateway", payment->gateway()}});
        defer(requested, now + options_.janitor_interval + options_.gateway_timeout);
        return;
    }
    // A key an earlier run made may have reached the gateway before that run
    // ended: what the gateway knows of it comes first.
    if (!is_key_of_this_run(ports_, payment->gateway_key())) {
        bool looked_up = false;
        {
            std::lock_guard lock(mutex_);
            looked_up = looked_up_.erase(env.payment_id) != 0;
        }
        if (!looked_up && queue_for_recovery(requested)) {
            guard.release_now();
            pump_recovery();
            return;
        }
        if (!looked_up) {
            guard.armed = false; // the look-up's answer or its timeout releases it
            look_up_before_sending(requested, *gateway);
            return;
        }
    }
    if (key_may_be_forgotten(*payment, now)) {
        // Sent again, it could be charged a second time: verified instead.
        ports_.logger.warn("an attempt's key is older than the provider keeps keys: not sent again",
                           {{"payment_id", env.payment_id.str()}, {"gateway", gateway->name}});
        guard.armed = false; // on_answer releases it
        on_answer(requested, ChargeAnswer::failed(FailureKind::unknown_outcome,
                                                  "may have been sent more than the provider's key retention ago"));
        return;
    }
    auto permit = gateway->breaker.acquire(now);
    if (permit.transition) circuit_changed(*gateway, *permit.transition);
    if (!permit.granted) {
        if (may_reroute_unsent(*payment, now)) {
            // Nothing went out under this key: fail it as TRANSIENT, and the
            // next attempt (a new key) is routed to a usable gateway.
            guard.release_now();
            settle_logged(requested, ChargeAnswer::failed(FailureKind::transient,
                                                          "not sent: the circuit of gateway " + gateway->name + " is open"));
            return;
        }
        ports_.metrics.charge_deferred(gateway->name);
        defer(requested, permit.retry_at);
        return;
    }

    auto call = std::make_shared<Call>(requested, now);
    call->gateway = gateway;
    call->generation = permit.generation;
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    // Armed before the charge, so that an answer given synchronously can cancel it.
    call->timeout = ports_.scheduler.call_at(call->started + options_.gateway_timeout, [weak, call] {
        if (!call->first()) return;
        if (auto self = weak.lock()) {
            self->count_call(*call, true);
            self->on_answer(call->requested,
                            ChargeAnswer::failed(FailureKind::unknown_outcome,
                                                  "gateway did not answer within " +
                                                      seconds_text(self->options_.gateway_timeout)));
        }
    });
    ports_.logger.debug("charging", {{"payment_id", env.payment_id.str()},
                                     {"attempt", env.attempt},
                                     {"gateway", gateway->name}});
    guard.armed = false; // from here the answer or the timeout releases it
    {
        std::lock_guard lock(mutex_);
        sent_.insert(env.payment_id);
    }
    gateway->gateway->charge(
        ChargeRequest{env.payment_id, env.invoice_id, requested.gateway_key, requested.amount,
                      requested.payment_method, env.correlation_id},
        [weak, call](ChargeAnswer outcome) {
            auto self = weak.lock();
            if (!self) return;
            self->contain("a charge's answer", call->requested.envelope.payment_id, [&] {
                if (call->first()) {
                    self->ports_.scheduler.cancel(call->timeout);
                    if (outcome.over_limit) return self->wait_for_room(*call);
                    self->ports_.metrics.gateway_latency(self->ports_.clock.now() - call->started);
                    self->count_call(*call, is_provider_failure(outcome));
                    self->on_answer(call->requested, outcome);
                } else if (!outcome.over_limit) {
                    self->on_late_answer(call->requested, outcome);
                }
                if (!outcome.over_limit) self->room_made(*call->gateway);
            });
        });
}

// The look-up of a key an earlier run made, before anything is sent on it
// (the look-up goes to the gateway that holds the key, whatever its circuit says).
void PaymentProcessor::look_up_before_sending(PaymentRequested const& requested, Gateways::Entry& gateway) {
    ports_.logger.info("looking up an attempt an earlier run made, before sending it",
                       {{"payment_id", requested.envelope.payment_id.str()}, {"gateway", gateway.name}});
    auto call = std::make_shared<Call>(requested, ports_.clock.now());
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    call->timeout = ports_.scheduler.call_at(call->started + options_.gateway_timeout, [weak, call] {
        if (!call->first()) return;
        if (auto self = weak.lock()) self->on_lookup_before_sending(call->requested, std::nullopt);
    });
    gateway.gateway->lookup(requested.gateway_key, [weak, call](ChargeStatus status) {
        auto self = weak.lock();
        if (!self) return;
        self->contain("a look-up's answer", call->requested.envelope.payment_id, [&] {
            if (call->first()) {
                self->ports_.scheduler.cancel(call->timeout);
                self->on_lookup_before_sending(call->requested, status);
            } else if (auto answer = definitive_answer(status)) {
                self->on_late_answer(call->requested, *answer);
            }
        });
    });
}

// A definitive record settles the attempt; anything else (no record, a
// pending one, no answer in time) sends it, on the same key.
void PaymentProcessor::on_lookup_before_sending(PaymentRequested const& requested,
                                                std::optional<ChargeStatus> const& status) {
    PaymentId const& id = requested.envelope.payment_id;
    if (auto answer = status ? definitive_answer(*status) : std::nullopt) {
        ClaimGuard guard{*this, id};
        settle_logged(requested, *answer);
        return;
    }
    // The claim is handed to the charge, and so is the place recovery gave
    // the attempt (review18 B-1): it is given up only once the attempt holds
    // no call, else the charges out would grow towards the attempts found.
    bool send = false;
    {
        std::lock_guard lock(mutex_);
        in_flight_.erase(id); // on_requested claims it again
        if (in_flight_.empty()) idle_.notify_all();
        send = !stopped_;
        if (send) looked_up_.insert(id);
    }
    if (send) on_requested(requested);
    give_up_recovery_place(id);
}

// An attempt recovery started that holds no claim any more (settled, held
// back, or driven elsewhere) gives its place to the next one recovery found.
void PaymentProcessor::give_up_recovery_place(PaymentId const& id) {
    bool freed = false;
    {
        std::lock_guard lock(mutex_);
        if (!in_flight_.contains(id)) freed = recovery_.running.erase(id) != 0;
    }
    if (freed) pump_recovery();
}

// A key made by another process run may have been sent by it, and so may one
// whose invoice another process held meanwhile (a takeover); one made here was
// sent only if sent_ says so.
bool PaymentProcessor::may_have_been_sent(Payment const& payment) const {
    if (!is_key_of_this_run(ports_, payment.gateway_key())) return true;
    if (!ports_.store.held_since_attempt(payment.invoice_id())) return true;
    std::lock_guard lock(mutex_);
    return sent_.contains(payment.id());
}

// The provider's retention runs from the key's first request, which came no
// earlier than the attempt was made and due.
bool PaymentProcessor::key_may_be_forgotten(Payment const& payment, Timestamp now) const {
    return key_older_than_retention(payment, now) && may_have_been_sent(payment);
}

bool PaymentProcessor::key_older_than_retention(Payment const& payment, Timestamp now) const {
    Timestamp const earliest_send = std::min(payment.created_at(), payment.not_before());
    return now - earliest_send >= options_.provider_key_retention;
}

void PaymentProcessor::settle_unsendable(PaymentRequested const& requested, Payment const& payment, ClaimGuard& guard) {
    PaymentId const& id = requested.envelope.payment_id;
    std::string const why = "the invoice is no longer PROCESSING (an operator's review began)";
    bool looked_up = false;
    {
        std::lock_guard lock(mutex_);
        looked_up = looked_up_.erase(id) != 0;
    }
    if (!may_have_been_sent(payment)) {
        guard.release_now();
        settle_logged(requested, ChargeAnswer::failed(FailureKind::transient, "not sent: " + why));
        return;
    }
    if (looked_up) {
        // Looked up with no final record: its outcome is unknown, and it is
        // verified as any unknown answer is (never sent again).
        guard.armed = false; // on_answer releases it
        on_answer(requested, ChargeAnswer::failed(FailureKind::unknown_outcome,
                                                  "may have been sent, and the gateway holds no final record; " + why));
        return;
    }
    Gateways::Entry* gateway = ports_.gateways.find(payment.gateway());
    if (!gateway) {
        ports_.logger.error("an attempt names a gateway this wiring does not have",
                            {{"payment_id", id.str()}, {"gateway", payment.gateway()}});
        defer(requested, ports_.clock.now() + options_.janitor_interval + options_.gateway_timeout);
        return;
    }
    guard.armed = false; // the look-up's answer or its timeout releases it
    look_up_before_sending(requested, *gateway);
}

bool PaymentProcessor::may_reroute_unsent(Payment const& payment, Timestamp now) const {
    if (may_have_been_sent(payment)) return false;
    for (std::size_t i = 0; i < ports_.gateways.size(); ++i) {
        auto const& entry = ports_.gateways[i];
        if (entry.name != payment.gateway() && entry.breaker.usable(now)) return true;
    }
    return false; // nowhere better to go: wait for this circuit
}

void PaymentProcessor::count_call(Call const& call, bool provider_failure) {
    if (auto moved = call.gateway->breaker.record(call.generation, provider_failure, ports_.clock.now()))
        circuit_changed(*call.gateway, *moved);
}

void PaymentProcessor::wait_for_room(Call const& call) {
    // Nothing was sent: the provider neither failed nor worked, so the
    // circuit counts nothing (a half-open probe is given back), and the
    // attempt is neither failed nor retried: it is sent again, same key,
    // once a call at this gateway ends (room_made) or the timer fires.
    call.gateway->breaker.forgo(call.generation);
    PaymentId const& id = call.requested.envelope.payment_id;
    bool arm = false;
    {
        std::lock_guard lock(mutex_);
        if (!stopped_ && deferred_.insert(id).second) {
            WaitingForRoom& waiting = waiting_for_room_[call.gateway];
            waiting.attempts.push_back(call.requested);
            arm = !std::exchange(waiting.timer_armed, true);
        }
    }
    release(id);
    if (arm) arm_room_timer(*call.gateway);
}

void PaymentProcessor::room_made(Gateways::Entry const& gateway) {
    std::optional<PaymentRequested> next;
    {
        std::lock_guard lock(mutex_);
        auto it = waiting_for_room_.find(&gateway);
        if (stopped_ || it == waiting_for_room_.end() || it->second.attempts.empty()) return;
        next = std::move(it->second.attempts.front());
        it->second.attempts.pop_front();
    }
    // Through the scheduler: a gateway that answers inline must not recurse.
    send_again(*next, ports_.clock.now());
}

// When no call at the gateway ends (the limit is held by calls of another
// process's making, or the answers came before the refusal), one waiting
// attempt is sent again per timer, never more: no spin.
void PaymentProcessor::arm_room_timer(Gateways::Entry const& gateway) {
    Duration const wait = options_.over_limit_wait;
    auto const jitter = Duration(static_cast<Duration::rep>(ports_.random.uniform(static_cast<std::uint64_t>(wait.count()))));
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    ports_.scheduler.call_at(ports_.clock.now() + wait + jitter, [weak, &gateway] {
        auto self = weak.lock();
        if (!self) return;
        bool rearm = false;
        {
            std::lock_guard lock(self->mutex_);
            WaitingForRoom& waiting = self->waiting_for_room_[&gateway];
            rearm = !self->stopped_ && waiting.attempts.size() > 1;
            waiting.timer_armed = rearm;
        }
        self->room_made(gateway);
        if (rearm) self->arm_room_timer(gateway);
    });
}

void PaymentProcessor::send_again(PaymentRequested const& requested, Timestamp at) {
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    ports_.scheduler.call_at(at, [weak, requested] {
        auto self = weak.lock();
        if (!self) return;
        {
            std::lock_guard lock(self->mutex_);
            self->deferred_.erase(requested.envelope.payment_id);
        }
        self->on_requested(requested);
    });
}

void PaymentProcessor::circuit_changed(Gateways::Entry const& gateway, CircuitTransition transition) {
    ports_.metrics.gateway_circuit_transition(gateway.name, transition);
    ports_.logger.log(transition.to == CircuitState::open ? LogLevel::warn : LogLevel::info, "gateway circuit changed", {{"gateway", gateway.name},
                                                       {"from", to_string(transition.from)},
                                                       {"to", to_string(transition.to)}});
}

// Never spun: the attempt comes back once its gateway's circuit may let it
// through, and no sooner than the policy's second delay (2 s by default),
// plus a jittered delay so that the attempts held back spread out.
void PaymentProcessor::defer(PaymentRequested const& requested, Timestamp at) {
    {
        std::lock_guard lock(mutex_);
        if (stopped_ || !deferred_.insert(requested.envelope.payment_id).second) return; // already coming back
    }
    Timestamp const now = ports_.clock.now();
    Duration const least = std::max(options_.retry.max_delay(1), Duration(std::chrono::milliseconds(1)));
    send_again(requested, std::max(at, now + least) + options_.retry.delay(1, ports_.random));
}

bool PaymentProcessor::deferred(PaymentId const& id) const {
    std::lock_guard lock(mutex_);
    return deferred_.contains(id);
}

// No thread waits for the settlement's commit: the claim is held until it is
// durable (or refused), then released by on_settled. settle_async ends every
// path in one call of its `done`, never in a throw, so nothing here releases
// the claim a second time.
void PaymentProcessor::on_answer(PaymentRequested const& requested, ChargeAnswer const& outcome) {
    settle_async(requested, outcome, [weak = weak_from_this(), requested](Result<PaymentStatus> settled) {
        if (auto self = weak.lock()) self->on_settled(requested, settled);
    });
}

void PaymentProcessor::on_settled(PaymentRequested const& requested, Result<PaymentStatus> const& settled) noexcept {
    PaymentId const& id = requested.envelope.payment_id;
    if (settled && *settled != PaymentStatus::requested) {
        std::lock_guard lock(mutex_);
        sent_.erase(id);
    }
    release(id);
    contain("a settlement's end", id, [&] {
        if (!settled)
            ports_.logger.error("could not record a gateway outcome",
                                {{"payment_id", id.str()},
                                 {"invoice_id", requested.envelope.invoice_id.str()},
                                 {"error", to_string(settled.error().code)},
                                 {"detail", settled.error().detail}});
    });
    if (settled && *settled == PaymentStatus::unknown) verify_contained(requested);
}

// An unknown answer is looked up whatever a port throws on the way: a
// look-up that could not start gives its place back, and the janitor finds
// the attempt unverified on its next round.
void PaymentProcessor::verify_contained(PaymentRequested const& requested) noexcept {
    PaymentId const& id = requested.envelope.payment_id;
    bool threw = true;
    contain("a verification's start", id, [&] {
        start_verifying(requested);
        threw = false;
    });
    if (!threw) return;
    {
        std::lock_guard lock(mutex_);
        verifying_.erase(id);
    }
    contain("a verification's start", id, [&] { arm_janitor(); });
}

// An UNKNOWN committed on the store's thread, its continuation refused: its
// verification reads and may commit (an escalation, an answer given inline),
// which must not run on the store's thread (a synchronous commit there waits
// for itself). Marked as verifying, so that on_settled starts nothing more
// here, and handed to a timer due now; if the scheduler refuses that too, the
// mark stays (on_settled still must not verify here: review 23, F3), saying
// that the janitor's next round verifies it.
void PaymentProcessor::verify_off_store_thread(PaymentRequested const& requested) noexcept {
    PaymentId const& id = requested.envelope.payment_id;
    {
        std::lock_guard lock(mutex_);
        if (stopped_ || !verifying_.emplace(id, 0).second) return;
    }
    bool armed = false;
    contain("a verification's start", id, [&] {
        std::weak_ptr<PaymentProcessor> weak = weak_from_this();
        armed = ports_.scheduler.call_at(ports_.clock.now(), [weak, requested] {
                    if (auto self = weak.lock()) self->verify(requested);
                }).seq != 0;
    });
    if (armed) return;
    {
        std::lock_guard lock(mutex_);
        verifying_[id] = verify_by_janitor;
    }
    contain("a verification's start", id, [&] { arm_janitor(); });
}

void PaymentProcessor::on_late_answer(PaymentRequested const& requested, ChargeAnswer const& outcome) {
    ports_.metrics.late_answer();
    ports_.logger.warn("gateway answered after the timeout",
                       {{"payment_id", requested.envelope.payment_id.str()},
                        {"correlation_id", requested.envelope.correlation_id.str()},
                        {"answer", outcome.succeeded() ? std::string_view("charged") : to_string(outcome.failure->kind)}});
    // Only a definitive answer says more than the timeout did.
    if (outcome.definitive()) settle_logged(requested, outcome);
}

void PaymentProcessor::start_verifying(PaymentRequested const& requested) {
    {
        std::lock_guard lock(mutex_);
        if (stopped_ || !verifying_.emplace(requested.envelope.payment_id, 0).second) return;
    }
    verify(requested);
}

void PaymentProcessor::verify(PaymentRequested const& requested) {
    PaymentId const& id = requested.envelope.payment_id;
    auto payment = ports_.store.payment(id);
    if (!payment || !payment->unresolved() || stopped()) {
        std::lock_guard lock(mutex_);
        verifying_.erase(id);
        return;
    }
    Timestamp const now = ports_.clock.now();
    if (payment->unknown_since() && now - *payment->unknown_since() >= options_.verification_limit) {
        escalate(requested, "no definitive answer from the gateway within the verification limit");
        return;
    }
    // The look-up goes to the gateway that holds the key, whatever its circuit says.
    Gateways::Entry* gateway = ports_.gateways.find(payment->gateway());
    if (!gateway) {
        ports_.logger.error("an unknown answer names a gateway this wiring does not have",
                            {{"payment_id", id.str()}, {"gateway", payment->gateway()}});
        verify_later(requested);
        return;
    }
    if (!claim(id)) { // a look-up of it is already out
        verify_later(requested);
        return;
    }
    ports_.metrics.outcome_verification();
    ports_.logger.info("verifying an unknown outcome", {{"payment_id", id.str()},
                                                        {"correlation_id", requested.envelope.correlation_id.str()}});
    auto call = std::make_shared<Call>(requested, now);
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    call->timeout = ports_.scheduler.call_at(now + options_.gateway_timeout, [weak, call] {
        if (!call->first()) return;
        if (auto self = weak.lock()) self->on_lookup(call->requested, std::nullopt, call->started);
    });
    gateway->gateway->lookup(requested.gateway_key, [weak, call](ChargeStatus status) {
        auto self = weak.lock();
        if (!self) return;
        self->contain("a look-up's answer", call->requested.envelope.payment_id, [&] {
            if (call->first()) {
                self->ports_.scheduler.cancel(call->timeout);
                self->on_lookup(call->requested, status, call->started);
            } else if (auto answer = definitive_answer(status)) {
                // A late look-up answer is as good as a late charge answer.
                self->on_late_answer(call->requested, *answer);
            }
        });
    });
}

void PaymentProcessor::on_lookup(PaymentRequested const& requested, std::optional<ChargeStatus> const& status,
                                 Timestamp asked_at) {
    PaymentId const& id = requested.envelope.payment_id;
    std::optional<Timestamp> window_end;
    ClaimGuard guard{*this, id};
    if (auto answer = status ? definitive_answer(*status) : std::nullopt) {
        settle_logged(requested, *answer);
    } else if (status && status->state == ChargeStatus::State::absent) { // PENDING is not final: ask again
        auto payment = ports_.store.payment(id);
        // An UNKNOWN attempt may have been sent: once its key may be
        // forgotten, "no record" says nothing of a charge made under it
        // (rule 13). Never final: an operator decides, at once.
        if (payment && payment->unresolved() && key_older_than_retention(*payment, asked_at)) {
            guard.release_now();
            escalate(requested, "the gateway holds no record of a key older than its key retention: "
                                "it may have forgotten the key, not the charge");
            return;
        }
        Timestamp const since = payment && payment->unknown_since() ? *payment->unknown_since() : ports_.clock.now();
        window_end = since + options_.settle_window;
        // Providers book late: only after the window does "no record" mean
        // "not charged", and the answer speaks of the moment it was asked.
        if (asked_at >= *window_end)
            settle_logged(requested, ChargeAnswer::failed(FailureKind::transient,
                                                          "the gateway holds no charge for the key after the settle window"));
    }
    guard.release_now();
    verify_later(requested, window_end);
}

void PaymentProcessor::verify_later(PaymentRequested const& requested, std::optional<Timestamp> no_later_than) {
    int lookups = 0;
    {
        std::lock_guard lock(mutex_);
        auto it = verifying_.find(requested.envelope.payment_id);
        if (stopped_ || it == verifying_.end()) return;
        lookups = ++it->second;
    }
    // Settled meanwhile: verify() finds it resolved and stops. At least a
    // second apart, whatever the policy's base; never past the verification
    // limit, so that the operator hears of it on time.
    Timestamp const now = ports_.clock.now();
    Timestamp at = now + std::max(options_.retry.max_delay(lookups), Duration(std::chrono::seconds(1)));
    if (no_later_than && *no_later_than > now) at = std::min(at, *no_later_than);
    if (auto payment = ports_.store.payment(requested.envelope.payment_id); payment && payment->unknown_since())
        at = std::max(now, std::min(at, *payment->unknown_since() + options_.verification_limit));
    std::weak_ptr<PaymentProcessor> weak = weak_from_this();
    ports_.scheduler.call_at(at, [weak, requested] {
        if (auto self = weak.lock()) self->verify(requested);
    });
}

void PaymentProcessor::escalate(PaymentRequested const& requested, std::string reason) {
    EventEnvelope const& env = requested.envelope;
    {
        std::lock_guard lock(mutex_);
        verifying_.erase(env.payment_id);
    }
    auto flagged = retry_on_conflict([&]() -> Result<void> {
        auto invoice = ports_.store.invoice(env.invoice_id);
        if (!invoice) return reject(ErrorCode::not_found, "invoice vanished from the store");
        InvoiceStatus const before = invoice->status();
        if (before != InvoiceStatus::processing && before != InvoiceStatus::needs_review) return {};
        std::uint64_t const version = invoice->version();
        auto review = invoice->require_review(env.payment_id, reason, new_event_meta(ports_, env.correlation_id));
        if (!review) return review.error();
        invoice->apply(*review);
        Changes changes{Changes::InvoiceWrite{*invoice, version}, {}};
        changes.events.emplace_back(std::move(*review));
        if (auto committed = commit_and_publish(ports_, std::move(changes)); !committed) return committed.error();
        if (before != InvoiceStatus::needs_review)
            ports_.metrics.invoice_status_changed(before, InvoiceStatus::needs_review);
        ports_.metrics.review_required(ReviewCause::unresolved);
        ports_.logger.error("invoice needs an operator", {{"invoice_id", env.invoice_id.str()},
                                                          {"payment_id", env.payment_id.str()},
                                                          {"cause", to_string(ReviewCause::unresolved)},
                                                          {"reason", reason}});
        return {};
    });
    if (!flagged)
        ports_.logger.error("could not put an invoice before an operator",
                            {{"invoice_id", env.invoice_id.str()}, {"error", flagged.error().detail}});
}

Result<PaymentStatus> PaymentProcessor::on_provider_notice(std::string_view gateway, std::string_view gateway_key,
                                                          ChargeStatus const& status) {
    // Keys are "<payment id>.<instance id>": the attempt is found from its key.
    auto const dot = gateway_key.find('.');
    auto id = PaymentId::parse(gateway_key.substr(0, dot));
    if (dot == std::string_view::npos || !id) return reject(ErrorCode::not_found, "no attempt has that gateway key");
    auto payment = ports_.store.payment(*id);
    if (!payment || payment->gateway_key() != gateway_key) return reject(ErrorCode::not_found, "no attempt has that gateway key");
    Gateways::Entry const* held = ports_.gateways.find(payment->gateway());
    if (!gateway.empty() && (!held || held->name != gateway))
        return reject(ErrorCode::not_found, "the attempt with that key is not at gateway " + std::string(gateway));
    auto answer = definitive_answer(status);
    if (!answer) return payment->status(); // "processing": the look-ups go on
    PaymentRequested const requested = request_of(*payment, new_event_meta(ports_, payment->correlation_id()));
    ports_.logger.info("the gateway sent a notice", {{"payment_id", id->str()},
                                                     {"gateway", payment->gateway()},
                                                     {"status", to_string(status.state)}});
    return settle(requested, *answer);
}

void PaymentProcessor::settle_logged(PaymentRequested const& requested, ChargeAnswer const& outcome) {
    if (auto settled = settle(requested, outcome); !settled)
        ports_.logger.error("could not record a gateway outcome",
                            {{"payment_id", requested.envelope.payment_id.str()},
                             {"invoice_id", requested.envelope.invoice_id.str()},
                             {"correlation_id", requested.envelope.correlation_id.str()},
                             {"error", to_string(settled.error().code)},
                             {"detail", settled.error().detail}});
}

// Loads the attempt and its invoice and decides on the answer: the commit it
// needs, if anything changed, and what to say once it is committed.
Result<PaymentProcessor::SettlementRound> PaymentProcessor::decide_answer(PaymentRequested const& requested,
                                                                          ChargeAnswer const& outcome) {
    EventEnvelope const& env = requested.envelope;
    auto payment = ports_.store.payment(env.payment_id);
    auto invoice = ports_.store.invoice(env.invoice_id);
    if (!payment || !invoice) return reject(ErrorCode::not_found, "attempt vanished from the store");
    std::uint64_t const payment_version = payment->version();
    std::uint64_t const invoice_version = invoice->version();

    SettlementRound round;
    round.invoice_before = invoice->status();
    Settlement settlement = decide_settlement(ports_, options_.retry, *payment, *invoice, outcome, env.correlation_id);
    round.payment_changed = payment->version() != payment_version;
    bool const invoice_changed = invoice->version() != invoice_version;
    round.invoice_after = invoice->status();
    round.status = payment->status();
    round.review = settlement.review;
    round.review_reason = std::move(settlement.review_reason);
    round.retry = settlement.retry.has_value();
    if (!round.payment_changed && !invoice_changed) return round;

    Changes changes;
    if (invoice_changed) changes.invoice = Changes::InvoiceWrite{std::move(*invoice), invoice_version};
    if (round.payment_changed) changes.payments.push_back({std::move(*payment), payment_version});
    if (settlement.retry) {
        changes.payments.push_back({Payment::from(*settlement.retry), 0});
        changes.scheduled.push_back({*settlement.retry, settlement.retry->not_before});
    }
    changes.events = std::move(settlement.published);
    round.changes = std::move(changes);
    return round;
}

// After the round's commit (or its decision, when nothing changed). The
// commit is durable by now: what the metrics or the logger throw is contained,
// so that the round's status always reaches its caller and the claim is released.
PaymentStatus PaymentProcessor::settled(PaymentRequested const& requested, ChargeAnswer const& outcome,
                                        SettlementRound const& round) noexcept {
    EventEnvelope const& env = requested.envelope;
    contain("a settlement's report", env.payment_id, [&] {
        if (round.payment_changed) report(requested, outcome, round.invoice_after);
        if (round.invoice_after != round.invoice_before)
            ports_.metrics.invoice_status_changed(round.invoice_before, round.invoice_after);
        // Said again with nothing to change: still an alert.
        if (round.review) alert(env, *round.review, round.review_reason);
        if (round.retry) ports_.metrics.retry_scheduled();
    });
    return round.status;
}

Result<PaymentStatus> PaymentProcessor::settle(PaymentRequested const& requested, ChargeAnswer const& outcome) {
    return retry_on_conflict([&]() -> Result<PaymentStatus> {
        auto round = decide_answer(requested, outcome);
        if (!round) return round.error();
        if (round->changes)
            if (auto committed = commit_and_publish(ports_, std::move(*round->changes)); !committed) return committed.error();
        return settled(requested, outcome, *round);
    });
}

void PaymentProcessor::settle_async(PaymentRequested const& requested, ChargeAnswer const& outcome,
                                    std::function<void(Result<PaymentStatus>)> done, int round_number) {
    // Shared by every round: a round that cannot be read or committed still ends in it.
    auto const finish = std::make_shared<std::function<void(Result<PaymentStatus>)>>(std::move(done));
    std::optional<Result<PaymentStatus>> decided; // what to say without a commit
    Result<SettlementRound> round = reject(ErrorCode::not_found, "not decided");
    try {
        round = decide_answer(requested, outcome);
        if (!round)
            decided = round.error();
        else if (!round->changes)
            decided = settled(requested, outcome, *round);
    } catch (std::exception const& failure) { // a read of the store failed (StorageFailure)
        decided = reject(ErrorCode::storage_unavailable, failure.what());
    } catch (...) {
        decided = reject(ErrorCode::storage_unavailable, "a read of the store threw an exception of unknown type");
    }
    if (decided) return (*finish)(std::move(*decided));
    Changes changes = std::move(*round->changes);
    round->changes.reset();
    {
        std::lock_guard lock(mutex_);
        ++committing_;
    }
    // Set once the store has called back (commit_and_publish_async counts the commit as answered then):
    // an exception that comes out of commit_async after that is not a refusal, and must not end the
    // settlement a second time.
    auto const answered = std::make_shared<std::atomic<bool>>(false);
    auto const refused = [&](std::string_view what) {
        if (answered->load()) return port_threw("a settlement's commit", requested.envelope.payment_id, what);
        commit_answered();
        (*finish)(reject(ErrorCode::storage_unavailable, std::string(what)));
    };
    try {
        commit_and_publish_async(
            ports_, std::move(changes), weak_from_this(),
            [weak = weak_from_this(), requested, outcome, round = std::move(*round), finish,
             round_number](CommitAnswer answer) {
                auto self = weak.lock();
                if (!self) return;
                Result<void> const& committed = answer.committed;
                if (!answer.posted) {
                    // On the store's thread (the scheduler refused the post): nothing is read or committed
                    // again here, but a durable commit is the settlement's, not a failure (review19 F7).
                    if (!committed) return (*finish)(committed.error());
                    PaymentStatus const status = self->settled(requested, outcome, round);
                    if (status == PaymentStatus::unknown) self->verify_off_store_thread(requested);
                    return (*finish)(status);
                }
                if (!committed && committed.error().code == ErrorCode::conflict && round_number < commit_attempts)
                    // Moved under it: read again and decide again, as retry_on_conflict does.
                    return self->settle_async(requested, outcome, *finish, round_number + 1);
                if (!committed && committed.error().code == ErrorCode::storage_unavailable &&
                    round_number < commit_attempts) {
                    // The writer was full or did not take it in time (review19 F5): a definitive answer is not
                    // dropped. Read and decide again a little later, the claim kept meanwhile.
                    Duration const wait = std::max(self->options_.retry.delay(round_number, self->ports_.random),
                                                   Duration(std::chrono::milliseconds(1)));
                    auto const again = self->ports_.scheduler.call_at(
                        self->ports_.clock.now() + wait, [weak, requested, outcome, finish, round_number] {
                            if (auto processor = weak.lock())
                                processor->settle_async(requested, outcome, *finish, round_number + 1);
                        });
                    if (again.seq != 0) return; // else the scheduler is shut down: answered below
                }
                if (!committed) return (*finish)(committed.error());
                (*finish)(self->settled(requested, outcome, round));
            },
            [weak = weak_from_this(), answered] {
                answered->store(true);
                if (auto self = weak.lock()) self->commit_answered();
            });
    } catch (std::exception const& failure) { // the store refused it by throwing: never called back
        refused(failure.what());
    } catch (...) {
        refused("the store refused the commit with an exception of unknown type");
    }
}

void PaymentProcessor::alert(EventEnvelope const& env, ReviewCause cause, std::string const& reason) {
    ports_.metrics.review_required(cause);
    ports_.logger.error(cause == ReviewCause::contradiction ? "ALERT: a gateway answer contradicts the record"
                                                            : "invoice needs an operator",
                        {{"invoice_id", env.invoice_id.str()},
                         {"payment_id", env.payment_id.str()},
                         {"correlation_id", env.correlation_id.str()},
                         {"cause", to_string(cause)},
                         {"reason", reason}});
}

void PaymentProcessor::report(PaymentRequested const& requested, ChargeAnswer const& outcome, InvoiceStatus invoice_status) {
    if (outcome.succeeded()) {
        ports_.metrics.payment_succeeded();
    } else {
        ports_.metrics.payment_failed(outcome.failure->kind);
    }
    EventEnvelope const& env = requested.envelope;
    ports_.logger.info(outcome.succeeded() ? "payment succeeded" : "payment failed",
                       {{"invoice_id", env.invoice_id.str()},
                        {"payment_id", env.payment_id.str()},
                        {"correlation_id", env.correlation_id.str()},
                        {"attempt", env.attempt},
                        {"failure", outcome.succeeded() ? std::string_view("none") : to_string(outcome.failure->kind)},
                        {"invoice_status", to_string(invoice_status)}});
}

} // namespace payments::application
