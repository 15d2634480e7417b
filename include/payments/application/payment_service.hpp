#pragma once

#include <payments/application/ports.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace payments::application {

/// Issue an invoice; without an id one is generated.
struct CreateInvoice {
    std::optional<domain::InvoiceId> id = {};
    domain::Money amount;
    std::string description = {};
    domain::CorrelationId correlation_id = {}; ///< generated when empty
};

/// Start paying an invoice; a repeated idempotency key replays the first outcome.
struct RequestPayment {
    domain::InvoiceId invoice_id;
    std::string payment_method = {}; ///< empty: the gateway's default for the customer
    std::optional<IdempotencyKey> idempotency_key = {};
    domain::CorrelationId correlation_id = {}; ///< generated when empty
};

/// An operator's decision on an invoice in NEEDS_REVIEW.
struct ResolveReview {
    domain::InvoiceId invoice_id;
    domain::ReviewDecision decision;
    domain::CorrelationId correlation_id = {}; ///< generated when empty
};

/// The outcome of a payment request, and whether it is a replay of an earlier one.
struct PaymentRequestReply {
    PaymentResult result;
    bool replayed = false;
};

/// What create_invoice_async() calls with create_invoice()'s result.
using CreateInvoiceDone = std::function<void(Result<domain::Invoice>)>;
/// What request_payment_async() calls with request_payment()'s reply.
using RequestPaymentDone = std::function<void(PaymentRequestReply)>;

/// The library's use cases: commands load an aggregate, decide, commit, then
/// publish; queries read the store. Thread-safe.
///
/// The commands come in two forms. The plain one holds the caller's thread
/// until its commit is durable. The `_async` one does not: the caller's thread
/// does the reads and the decision, then goes on; the reply is handed to `done`
/// exactly once, with what the plain form would return. A reply known before
/// anything is committed (stopped, an idempotency replay or key conflict, a
/// read the store could not answer, a refusal of the decision) comes at once,
/// on the caller's thread, as does a payment request's reply on a store that
/// commits at once (the in-memory one); every other one on the Scheduler's threads once
/// the commit is durable (or refused), so that `done` may block or call the
/// service again. A server answers a request from `done` instead
/// of parking a thread on each commit. If the service is destroyed first, a
/// `done` not yet called is destroyed uncalled; `done` must not throw.
class PaymentService {
public:
    explicit PaymentService(Ports ports);
    /// Waits for a continuation of an `_async` command that is running.
    ~PaymentService();
    PaymentService(PaymentService const&) = delete;
    PaymentService& operator=(PaymentService const&) = delete;

    /// `unavailable` once stop_accepting() was called; nothing is committed then.
    Result<domain::Invoice> create_invoice(CreateInvoice command);
    /// `unavailable` once stop_accepting() was called, before the key is
    /// claimed or anything is committed.
    PaymentRequestReply request_payment(RequestPayment const& command);

    /// create_invoice() without holding the caller's thread for its commit (see the class).
    void create_invoice_async(CreateInvoice command, CreateInvoiceDone done);
    /// request_payment() without holding the caller's thread for its commit (see
    /// the class). The key is claimed on the caller's thread, and stays claimed
    /// until `done` is called: a repeat meanwhile is `idempotency_key_in_use`.
    void request_payment_async(RequestPayment command, RequestPaymentDone done);

    /// The operator's action on an invoice in NEEDS_REVIEW: "charged, with
    /// reference R" makes it PAID by the attempt under review; "not charged"
    /// makes it FAILED, and payable again. `invalid_state` for any other
    /// status, or for "not charged" when the attempt is recorded as charged.
    Result<domain::Invoice> resolve_review(ResolveReview const& command);

    /// Refuses new commands from now on (shutdown); work already accepted goes on.
    void stop_accepting() noexcept;
    bool accepting() const noexcept;
    /// `_async` commands accepted and not answered yet (their commits are
    /// queued or being made durable).
    std::size_t commands_in_flight() const;
    /// Waits until no `_async` command is in flight, or `deadline`; false at
    /// the deadline. Engine::shutdown() waits for them within its grace.
    bool wait_commands(std::chrono::steady_clock::time_point deadline) const;

    Result<domain::Invoice> invoice(domain::InvoiceId const& id) const;
    Result<InvoicePage> invoices(InvoiceQuery const& query) const;
    /// not_found for an unknown invoice.
    Result<std::vector<domain::Payment>> payments_of(domain::InvoiceId const& id) const;
    Result<domain::Payment> payment(domain::PaymentId const& id) const;
    /// The invoice's events in the order they were committed (its audit
    /// history, as far back as the store keeps it); not_found for an unknown invoice.
    Result<std::vector<domain::Event>> history(domain::InvoiceId const& id) const;

private:
    struct PendingPayment;
    PaymentResult request_payment_once(RequestPayment const& command, domain::CorrelationId const& correlation_id,
                                       IdempotencyKey const* key = nullptr);
    void attempt_payment_async(std::shared_ptr<PendingPayment> const& pending);
    void end_payment_async(PendingPayment& pending, PaymentResult outcome, bool posted);
    void payment_requested(domain::Payment const& payment, domain::InvoiceStatus before,
                           domain::CorrelationId const& correlation_id);
    domain::CorrelationId correlation(domain::CorrelationId const& given) const;

    Ports ports_;
    std::atomic<bool> accepting_{true};
    /// Held by each running continuation of an `_async` command; the destructor
    /// lets go of it and waits until none holds it.
    std::shared_ptr<int const> alive_ = std::make_shared<int const>(0);
    /// What the continuations are given: never written after construction, so
    /// that a continuation may copy it while the destructor lets go of alive_.
    std::weak_ptr<int const> const owner_ = alive_;
    /// `_async` commands accepted and not yet answered (shared with them: one
    /// may be dropped after the service is gone).
    struct Commands {
        std::mutex mutex;
        std::condition_variable none_left;
        std::size_t count = 0; ///< Owned by: mutex
    };
    std::shared_ptr<Commands> in_flight_ = std::make_shared<Commands>();
};

} // namespace payments::application
