#include <payments/application/payment_service.hpp>

#include "commit_retry.hpp"
#include "outbox.hpp"

#include <memory>
#include <thread>

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

// The answer a key's claim already gives (a replay, the key in use or
// reused); none when it is claimed for this request.
std::optional<PaymentRequestReply> answer_of(IdempotencyClaim& claim) {
    switch (claim.state) {
    case IdempotencyClaim::State::replay: return PaymentRequestReply{std::move(*claim.stored), true};
    case IdempotencyClaim::State::in_use:
        return PaymentRequestReply{
            reject(ErrorCode::idempotency_key_in_use, "a request with this idempotency key is still running"), false};
    case IdempotencyClaim::State::mismatch:
        return PaymentRequestReply{
            reject(ErrorCode::idempotency_key_reused, "this idempotency key was used for a different request"), false};
    case IdempotencyClaim::State::claimed: break;
    }
    return std::nullopt;
}

Result<void> refuse_when_stopped(std::atomic<bool> const& accepting) {
    if (!accepting.load(std::memory_order_acquire))
        return reject(ErrorCode::unavailable, "the service is shutting down; retry against another instance or later");
    return {};
}

} // namespace

PaymentService::PaymentService(Ports ports) : ports_(ports) {}

PaymentService::~PaymentService() {
    std::weak_ptr<int const> const running = alive_;
    alive_.reset();
    while (!running.expired()) std::this_thread::yield();
}

CorrelationId PaymentService::correlation(CorrelationId const& given) const {
    return given.empty() ? CorrelationId::generate(ports_.random) : given;
}

void PaymentService::stop_accepting() noexcept { accepting_.store(false, std::memory_order_release); }

bool PaymentService::accepting() const noexcept { return accepting_.load(std::memory_order_acquire); }

std::size_t PaymentService::commands_in_flight() const {
    std::lock_guard lock(in_flight_->mutex);
    return in_flight_->count;
}

bool PaymentService::wait_commands(std::chrono::steady_clock::time_point deadline) const {
    std::unique_lock lock(in_flight_->mutex);
    return in_flight_->none_left.wait_until(lock, deadline, [&] { return in_flight_->count == 0; });
}

namespace {

// Counts an asynchronous command from its acceptance until what carries it
// (its continuation's state) is gone: answered, or dropped with a service
// that went first.
template <class Commands>
class InFlight {
public:
    explicit InFlight(std::shared_ptr<Commands> commands) : commands_(std::move(commands)) {
        std::lock_guard lock(commands_->mutex);
        ++commands_->count;
    }
    InFlight(InFlight const&) = delete;
    InFlight& operator=(InFlight const&) = delete;
    ~InFlight() {
        std::lock_guard lock(commands_->mutex);
        if (--commands_->count == 0) commands_->none_left.notify_all();
    }

private:
    std::shared_ptr<Commands> commands_;
};

// Runs a report (metrics, a log line) of what is already done: an adapter
// that throws must not turn a durable commit into a failure, nor keep a
// command from being answered (review 25, F2).
template <class Report>
void reported(Report&& report) noexcept {
    try {
        report();
    } catch (...) {
    }
}

} // namespace

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

namespace {

// A new invoice and the commit that stores it, or the refusal of the command.
Result<std::pair<Invoice, Changes>> new_invoice(Ports const& ports, CreateInvoice command,
                                               CorrelationId const& correlation_id) {
    InvoiceId id = command.id ? std::move(*command.id) : InvoiceId::generate(ports.random);
    auto created = Invoice::create(std::move(id), command.amount, std::move(command.description),
                                   new_event_meta(ports, correlation_id));
    if (!created) return created.error();
    Invoice invoice = Invoice::from(*created);
    Changes changes{Changes::InvoiceWrite{invoice, 0}, {}};
    changes.events.emplace_back(std::move(*created));
    changes.origin = Changes::Origin::client;
    return std::pair{std::move(invoice), std::move(changes)};
}

// create_invoice()'s answer once its commit answered.
Result<Invoice> invoice_created(Ports const& ports, Invoice invoice, CorrelationId const& correlation_id,
                                Result<void> const& committed) {
    if (!committed) {
        if (committed.error().code == ErrorCode::already_exists)
            return reject(ErrorCode::already_exists, "invoice " + std::string(invoice.id().str()) + " already exists");
        return committed.error();
    }
    reported([&] {
        ports.metrics.invoice_status_changed(std::nullopt, invoice.status());
        ports.logger.info("invoice created", {{"invoice_id", invoice.id().str()},
                                              {"correlation_id", correlation_id.str()},
                                              {"amount", invoice.amount().minor_units()},
                                              {"currency", invoice.amount().currency().code()}});
    });
    return invoice;
}

} // namespace

Result<Invoice> PaymentService::create_invoice(CreateInvoice command) {
    if (auto open = refuse_when_stopped(accepting_); !open) return open.error();
    CorrelationId correlation_id = correlation(command.correlation_id);
    auto made = new_invoice(ports_, std::move(command), correlation_id);
    if (!made) return made.error();
    auto committed = commit_and_publish(ports_, std::move(made->second));
    return invoice_created(ports_, std::move(made->first), correlation_id, committed);
}

void PaymentService::create_invoice_async(CreateInvoice command, CreateInvoiceDone done) {
    struct Pending {
        Pending(CreateInvoiceDone d, std::shared_ptr<Commands> commands) : done(std::move(d)), counted(std::move(commands)) {}
        CreateInvoiceDone done;
        InFlight<Commands> counted;
    };
    // Counted before the stopped check: a shutdown that found none in flight
    // has stopped accepting, so this one is refused (review 26, G4).
    auto pending = std::make_shared<Pending>(std::move(done), in_flight_);
    Result<Invoice> at_once = reject(ErrorCode::storage_unavailable, "not answered");
    try {
        if (auto open = refuse_when_stopped(accepting_); !open) {
            at_once = open.error();
        } else {
            CorrelationId correlation_id = correlation(command.correlation_id);
            auto made = new_invoice(ports_, std::move(command), correlation_id);
            if (!made) {
                at_once = made.error();
            } else {
                // If it throws, commit_async() will not answer: answered below.
                commit_and_publish_async(ports_, std::move(made->second), owner_,
                                         [this, invoice = std::move(made->first), correlation_id,
                                          pending](CommitAnswer answer) mutable {
                                             pending->done(invoice_created(ports_, std::move(invoice), correlation_id,
                                                                           answer.committed));
                                         });
                return;
            }
        }
    } catch (StorageFailure const& failure) {
        at_once = reject(ErrorCode::storage_unavailable, failure.what());
    }
    pending->done(std::move(at_once));
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
        if (auto answered = answer_of(claim)) return std::move(*answered);

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

namespace {

// What a payment request decided on the invoice as stored (in place, in a
// store that can): its new attempt, and the invoice's status before.
struct PaymentDecision {
    std::optional<Payment> made;
    InvoiceStatus before{};
};

// The decision itself; `out` and the arguments outlive the store's call of it.
Store::Decide decide_payment(Ports const& ports, RequestPayment const& command, CorrelationId const& correlation_id,
                             IdempotencyKey const* key, PaymentDecision& out) {
    return [&ports, &command, &correlation_id, key, &out](Invoice const& invoice) -> Result<Changes> {
        out.before = invoice.status();
        auto requested = invoice.request_payment(new_attempt(ports), command.payment_method,
                                                 new_event_meta(ports, correlation_id));
        if (!requested) return requested.error();
        out.made = Payment::from(*requested);
        Changes changes{std::nullopt, {Changes::PaymentWrite{*out.made, 0}}};
        changes.events.emplace_back(std::move(*requested));
        changes.origin = Changes::Origin::client;
        if (key) changes.idempotency = IdempotencyCompletion{*key, *out.made, ports.clock.now()};
        return changes;
    };
}

void apply_payment(Invoice& invoice, Changes const& decided) {
    invoice.apply(std::get<PaymentRequested>(decided.events.front()));
}

} // namespace

void PaymentService::payment_requested(Payment const& payment, InvoiceStatus before, CorrelationId const& correlation_id) {
    reported([&] {
        ports_.metrics.payment_requested();
        ports_.metrics.invoice_status_changed(before, InvoiceStatus::processing);
        ports_.logger.info("payment requested", {{"invoice_id", payment.invoice_id().str()},
                                                 {"payment_id", payment.id().str()},
                                                 {"correlation_id", correlation_id.str()},
                                                 {"attempt", payment.attempt()}});
    });
}

PaymentResult PaymentService::request_payment_once(RequestPayment const& command, CorrelationId const& correlation_id,
                                                   IdempotencyKey const* key) {
    return retry_on_conflict([&]() -> PaymentResult {
        PaymentDecision decision;
        if (auto committed = update_and_publish(ports_, command.invoice_id,
                                                decide_payment(ports_, command, correlation_id, key, decision),
                                                apply_payment);
            !committed)
            return committed.error();
        payment_requested(*decision.made, decision.before, correlation_id);
        return std::move(*decision.made);
    });
}

// One asynchronous payment request between its claim and its reply.
struct PaymentService::PendingPayment {
    explicit PendingPayment(std::shared_ptr<Commands> in_flight) : counted(std::move(in_flight)) {}
    RequestPayment command;
    CorrelationId correlation_id;
    bool claimed = false; ///< the command's key is claimed for this request
    RequestPaymentDone done;
    int round = 0;
    PaymentDecision decision;
    InFlight<Commands> counted;
};

void PaymentService::request_payment_async(RequestPayment command, RequestPaymentDone done) {
    auto pending = std::make_shared<PendingPayment>(in_flight_);
    PaymentRequestReply at_once{reject(ErrorCode::storage_unavailable, "not answered"), false};
    try {
        if (auto open = refuse_when_stopped(accepting_); !open) {
            at_once = {open.error(), false};
        } else {
            pending->correlation_id = correlation(command.correlation_id);
            pending->command = std::move(command);
            std::optional<PaymentRequestReply> refused;
            if (auto const& key = pending->command.idempotency_key) {
                auto claim = ports_.idempotency.claim(*key, fingerprint(pending->command), ports_.clock.now());
                refused = answer_of(claim);
                pending->claimed = !refused;
            }
            if (refused) {
                at_once = std::move(*refused);
            } else {
                pending->done = std::move(done);
                return attempt_payment_async(pending);
            }
        }
    } catch (StorageFailure const& failure) {
        at_once = {reject(ErrorCode::storage_unavailable, failure.what()), false};
    }
    done(std::move(at_once));
}

// One round: decide on the invoice and commit; a conflict (the invoice moved
// under it) goes round again from the scheduler's thread, as retry_on_conflict does.
void PaymentService::attempt_payment_async(std::shared_ptr<PendingPayment> const& pending) {
    RequestPayment const& command = pending->command;
    IdempotencyKey const* key = pending->claimed ? &*command.idempotency_key : nullptr;
    try {
        pending->decision = {};
        update_and_publish_async(ports_, command.invoice_id,
                                 decide_payment(ports_, command, pending->correlation_id, key, pending->decision),
                                 apply_payment, owner_, [this, pending](CommitAnswer answer) {
                                     PaymentDecision& decision = pending->decision;
                                     if (answer.committed) {
                                         payment_requested(*decision.made, decision.before, pending->correlation_id);
                                         return end_payment_async(*pending, std::move(*decision.made), answer.posted);
                                     }
                                     // Not on the store's thread (posted): another round may read and commit.
                                     if (answer.committed.error().code == ErrorCode::conflict && answer.posted &&
                                         ++pending->round < commit_attempts)
                                         return attempt_payment_async(pending);
                                     end_payment_async(*pending, answer.committed.error(), answer.posted);
                                 });
    } catch (std::exception const& e) {
        // Not submitted (update_async() threw: it will not answer): a read the
        // store could not answer, most often; the claim must end either way.
        end_payment_async(*pending, reject(ErrorCode::storage_unavailable, e.what()), true);
    } catch (...) {
        end_payment_async(*pending, reject(ErrorCode::storage_unavailable, "the store threw an exception of unknown type"),
                          true);
    }
}

// The claim ends as request_payment()'s does (completed for replay, or
// released), then the reply goes out. When the scheduler refused the post
// (`posted` false: it is shutting down, and this may be the store's thread,
// where a write would wait for itself) only a payment's claim ends, in
// memory (its record was completed by its commit); a refusal's key stays
// claimed until the process exits, or on a shared store until its claim
// times out: a repeat meanwhile is `idempotency_key_in_use`.
void PaymentService::end_payment_async(PendingPayment& pending, PaymentResult outcome, bool posted) {
    if (pending.claimed && (posted || outcome)) {
        IdempotencyKey const& key = *pending.command.idempotency_key;
        try {
            if (replayable(outcome)) ports_.idempotency.complete(key, outcome, ports_.clock.now());
            else ports_.idempotency.release(key);
        } catch (...) {
            try {
                ports_.idempotency.release(key);
            } catch (...) {
            }
            std::string what = "the idempotency store failed";
            try {
                throw;
            } catch (std::exception const& e) {
                what = e.what();
            } catch (...) {
            }
            outcome = reject(ErrorCode::storage_unavailable, std::move(what));
        }
        pending.claimed = false;
    }
    auto done = std::move(pending.done);
    if (done) done({std::move(outcome), false});
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
