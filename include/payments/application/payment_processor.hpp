#pragma once

#include <payments/application/ports.hpp>
#include <payments/domain/retry_policy.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace payments::application {

/// How the processor charges, verifies and re-drives attempts.
struct ProcessorOptions {
    /// Backoff between attempts of a cycle, and between look-ups of an unknown answer.
    domain::RetryPolicy retry;
    /// A gateway call unanswered this long is an UNKNOWN_OUTCOME failure; its
    /// answer is still taken if it comes later.
    domain::Duration gateway_timeout = std::chrono::seconds(10);
    /// "No such charge" from a look-up is definitive only this long after the
    /// answer became unknown: providers book late and their search lags.
    /// Shorter than the provider's booking lag risks a double charge.
    domain::Duration settle_window = std::chrono::minutes(5);
    /// An answer still unknown after this long puts the invoice before an
    /// operator (NEEDS_REVIEW), and look-ups stop.
    domain::Duration verification_limit = std::chrono::hours(24);
    /// How long the provider surely remembers an idempotency key after its
    /// first request. A key that may have been sent this long ago is never
    /// sent again (the provider would take the money a second time); its
    /// outcome is verified with look-ups instead ("not found" is never final
    /// for it), and the invoice goes before an operator if none is final.
    /// 23 h: an hour under Stripe's 24 h, because the clocks of this process,
    /// of the one that sent the key and of the provider differ, and the
    /// provider's pruning is not promised to the second.
    domain::Duration provider_key_retention = std::chrono::hours(23);
    /// How often the janitor looks for attempts that nothing drives any more;
    /// zero turns it off. It runs only while some invoice is PROCESSING.
    domain::Duration janitor_interval = std::chrono::seconds(60);
    /// An attempt its gateway refused unsent at the adapter's own limit
    /// (ChargeAnswer::over_limit) waits for room: each answer from that
    /// gateway sends one waiting attempt again, and when none comes, one is
    /// sent again after this long plus a jitter of up to as much. It fails
    /// nothing and uses no retry.
    domain::Duration over_limit_wait = std::chrono::milliseconds(50);
    /// true: the janitor's rounds go on while nothing is PROCESSING. With a
    /// store several processes share, another process's work may need taking
    /// over at any time (the server sets it for PostgreSQL).
    bool janitor_when_idle = false;
    /// Recovery at start reads the store in pages of this many invoices
    /// (1..InvoiceQuery::max_limit), the next once every attempt the last
    /// one found has started: what it holds is bounded, however much an
    /// earlier run left.
    std::size_t recovery_page = 256;
    /// The most attempts recovery drives at once (a look-up or a charge out
    /// for each, 1..10,000); the next starts as one ends. Attempts of an
    /// earlier run's key that the outbox delivers at start, or the janitor
    /// finds, are driven within the same bound.
    std::size_t recovery_in_flight = 64;

    /// Every duration in range; the retry policy valid.
    Result<void> validate() const;
};

/// Work that was accepted and had not settled, by kind.
struct UnsettledWork {
    std::size_t at_gateway = 0;    ///< a charge or look-up out, unanswered
    std::size_t retry_due = 0;     ///< an attempt scheduled for later (or due and not yet started)
    std::size_t unknown = 0;       ///< an answer unknown, look-ups pending
    std::size_t needs_review = 0;  ///< waiting on an operator

    std::size_t total() const noexcept { return at_gateway + retry_due + unknown + needs_review; }
    /// What the library is still working on by itself: all but `needs_review`.
    std::size_t in_progress() const noexcept { return at_gateway + retry_due + unknown; }
};

/// Charges each requested payment at the gateway, once, and settles the
/// outcome: the invoice is paid, the next attempt is scheduled on the bus
/// after a backoff, or the invoice fails. Redelivered and duplicated
/// PaymentRequested events never reach the gateway a second time.
///
/// Money rules (docs/decisions.md):
/// - any definitive answer settles the attempt whenever it arrives, before or
///   after the timeout, to a charge or to a look-up; one that contradicts the
///   record puts the invoice before an operator and raises an alert;
/// - an unknown answer is verified with look-ups of the same key, never a new
///   key; "not found" counts only after the settle window; past the
///   verification limit the invoice needs an operator;
/// - the janitor re-drives attempts that nothing drives any more.
///
/// Threads: callbacks come from the bus, the gateway and the scheduler, on
/// any thread; shared state is behind one mutex.
class PaymentProcessor : public std::enable_shared_from_this<PaymentProcessor> {
    struct Private {};

public:
    /// Subscribes a new processor to PaymentRequested on `ports.bus`.
    static Result<std::shared_ptr<PaymentProcessor>> start(Ports ports, ProcessorOptions options);

    PaymentProcessor(Private, Ports ports, ProcessorOptions options);

    /// Unsubscribes and stops scheduling look-ups and janitor rounds; calls
    /// already at the gateway still settle.
    void stop();

    /// Gateway calls (charges and look-ups) not yet answered.
    std::size_t in_flight() const;
    /// Unknown outcomes this processor is verifying, or has left for its
    /// janitor to verify. For tests and metrics.
    std::size_t verifying() const;
    /// Waits until no gateway call is in flight; false at the deadline.
    bool wait_idle(std::chrono::steady_clock::time_point deadline) const;

    /// Accepted work not yet settled, read from the store.
    UnsettledWork unsettled() const;

    /// Waits until the store has answered every settlement's commit (a
    /// durable store answers on its writer thread, and the rest of the
    /// settlement is posted to the scheduler); false if the deadline came first.
    bool wait_commits(std::chrono::steady_clock::time_point deadline) const;

    /// One janitor round now: re-drives what nothing drives; returns how many.
    std::size_t run_janitor();
    /// Recovery at start, over work an earlier run left unsettled: every
    /// attempt REQUESTED and due is handed to this processor alone (never
    /// published to the bus's subscribers), on the engine's threads
    /// (Scheduler::post) so that their commits share transactions: its key is
    /// looked up first, as for any attempt whose key an earlier run made: a
    /// definitive record settles it; no record, a pending one or no answer
    /// in time sends it again on the same key (the gateway never charges a
    /// key twice). Every UNKNOWN one is verified with look-ups of its key.
    /// The store is read `recovery_page` invoices at a time, and at most
    /// `recovery_in_flight` attempts are driven at once (an attempt keeps
    /// its place from its look-up to its charge's answer); the next page is
    /// read once all that the last one found have started. An attempt of an
    /// earlier run's key delivered meanwhile (the outbox at start, the
    /// janitor) waits in the same queue, and the janitor's rounds wait until
    /// recovery has started everything. Reads the first
    /// page before it returns (throws StorageFailure if it cannot), and
    /// returns how many attempts it found there.
    std::size_t recover();
    /// How many attempts wait in recovery's queue, not yet started: at most
    /// `recovery_page` that the bus delivered plus a page recovery read
    /// (review 21, F3). For tests and metrics.
    std::size_t recovery_queued() const;

    /// What a provider said unasked (a signed webhook) about the charge under
    /// `gateway_key`: a definitive status settles the attempt at once, through
    /// the same settlement as a look-up's answer (amount checked,
    /// contradictions put before an operator); "processing" or "no record"
    /// changes nothing. `gateway` empty: whichever gateway holds the key.
    /// not_found when no attempt has that key (at that gateway).
    Result<domain::PaymentStatus> on_provider_notice(std::string_view gateway, std::string_view gateway_key,
                                                     ChargeStatus const& status);

private:
    struct Call;

    void on_requested(domain::PaymentRequested const& requested);
    void look_up_before_sending(domain::PaymentRequested const& requested, Gateways::Entry& gateway);
    void on_lookup_before_sending(domain::PaymentRequested const& requested, std::optional<ChargeStatus> const& status);
    void on_answer(domain::PaymentRequested const& requested, ChargeAnswer const& outcome);
    void on_late_answer(domain::PaymentRequested const& requested, ChargeAnswer const& outcome);
    void verify(domain::PaymentRequested const& requested);
    void on_lookup(domain::PaymentRequested const& requested, std::optional<ChargeStatus> const& status,
                   domain::Timestamp asked_at);
    void verify_later(domain::PaymentRequested const& requested, std::optional<domain::Timestamp> no_later_than = {});
    void start_verifying(domain::PaymentRequested const& requested);
    void verify_contained(domain::PaymentRequested const& requested) noexcept;
    void verify_off_store_thread(domain::PaymentRequested const& requested) noexcept;
    void escalate(domain::PaymentRequested const& requested, std::string reason);
    void arm_janitor();
    domain::Duration janitor_grace() const;
    // One pass over the attempts the janitor looks after.
    struct Round {
        std::size_t redriven = 0;
        bool work_left = false; ///< some attempt may need a later round
    };
    Round redrive(domain::Duration grace);
    bool owes_an_answer(domain::Invoice const& invoice, domain::Payment const& payment) const;
    // An attempt the janitor or recovery found undriven: sent again (the
    // handler of PaymentRequested), or verified.
    struct Redrive {
        domain::PaymentRequested request;
        bool verify = false;
    };
    std::optional<Redrive> redrive_of(domain::Invoice const& invoice, domain::Payment const& payment,
                                      domain::Duration grace);
    void drive(Redrive const& redrive);
    void upgrade_to_verify(domain::PaymentId const& id);
    // Recovery: pages of the store, a bounded number of attempts driven at once.
    std::size_t scan_recovery_page();
    void scan_recovery() noexcept;
    void pump_recovery();
    void run_recovered(Redrive const& redrive) noexcept;
    void give_up_recovery_place(domain::PaymentId const& id);
    void port_threw(std::string_view where, domain::PaymentId const& id, std::string_view what) noexcept;
    // Runs `fn` where nothing may escape: a gateway's callback, on the adapter's thread.
    template <class Fn>
    void contain(std::string_view where, domain::PaymentId const& id, Fn&& fn) noexcept;
    /// The rule for the janitor at start: while recovery has attempts to
    /// read or start, its rounds leave the store to it (review18 B-2).
    bool recovery_pending() const;
    /// The rule for another run's key that comes from the bus or the janitor:
    /// it waits in recovery's queue, within `recovery_in_flight` (review18 B-4),
    /// once, and only while the queue holds fewer than `recovery_page` (the
    /// store keeps it: review 21, F3). False if it is one recovery runs
    /// already (or the processor stopped).
    bool queue_for_recovery(domain::PaymentRequested const& requested);
    // One load-and-decide of a settlement: its commit (none if nothing
    // changed) and what to report once it is committed.
    struct SettlementRound {
        std::optional<Changes> changes;
        bool payment_changed = false;
        domain::InvoiceStatus invoice_before = domain::InvoiceStatus::pending;
        domain::InvoiceStatus invoice_after = domain::InvoiceStatus::pending;
        domain::PaymentStatus status = domain::PaymentStatus::requested;
        std::optional<ReviewCause> review;
        std::string review_reason;
        bool retry = false;
    };
    Result<SettlementRound> decide_answer(domain::PaymentRequested const& requested, ChargeAnswer const& outcome);
    domain::PaymentStatus settled(domain::PaymentRequested const& requested, ChargeAnswer const& outcome,
                                  SettlementRound const& round) noexcept;
    Result<domain::PaymentStatus> settle(domain::PaymentRequested const& requested, ChargeAnswer const& outcome);
    // settle() without holding the thread for the commit: `done` gets its
    // result on the scheduler's threads (Scheduler::post) once it is durable;
    // a conflict reads and decides again, up to commit_attempts rounds. Every
    // path ends in exactly one call of `done` (a failed read or a store that
    // throws as storage_unavailable), never in a throw, unless `done` throws;
    // none once the processor is gone.
    void settle_async(domain::PaymentRequested const& requested, ChargeAnswer const& outcome,
                      std::function<void(Result<domain::PaymentStatus>)> done, int round_number = 1);
    void on_settled(domain::PaymentRequested const& requested, Result<domain::PaymentStatus> const& settled) noexcept;
    void commit_answered();
    void settle_logged(domain::PaymentRequested const& requested, ChargeAnswer const& outcome);
    void alert(domain::EventEnvelope const& env, ReviewCause cause, std::string const& reason);
    void report(domain::PaymentRequested const& requested, ChargeAnswer const& outcome,
                domain::InvoiceStatus invoice_status);
    bool claim(domain::PaymentId const& id);
    void release(domain::PaymentId const& id);
    bool claimed(domain::PaymentId const& id) const;
    void defer(domain::PaymentRequested const& requested, domain::Timestamp at);
    bool deferred(domain::PaymentId const& id) const;
    /// The rule for an attempt whose gateway's circuit is open: it may be
    /// failed unsent (TRANSIENT) and its successor routed elsewhere only if
    /// no process ever sent its key (made in this run, never sent by this
    /// processor) and another gateway is usable; else it waits (defer).
    bool may_reroute_unsent(domain::Payment const& payment, domain::Timestamp now) const;
    /// A key of another run, or of an invoice another process held, or one
    /// this processor sent: the provider may know it.
    bool may_have_been_sent(domain::Payment const& payment) const;
    /// The rule for old keys: one that may have been sent `provider_key_retention`
    /// ago or more is never sent again.
    bool key_may_be_forgotten(domain::Payment const& payment, domain::Timestamp now) const;
    /// True once `provider_key_retention` has passed since the attempt's key
    /// could first have been sent: the provider may have forgotten it.
    bool key_older_than_retention(domain::Payment const& payment, domain::Timestamp now) const;
    void count_call(Call const& call, bool provider_failure);
    /// The rule for a charge refused unsent at the adapter's own limit: not
    /// counted by the circuit, not failed; the attempt waits for room.
    void wait_for_room(Call const& call);
    /// A call at `gateway` ended: one attempt waiting for room there is sent again.
    void room_made(Gateways::Entry const& gateway);
    void arm_room_timer(Gateways::Entry const& gateway);
    void send_again(domain::PaymentRequested const& requested, domain::Timestamp at);
    void circuit_changed(Gateways::Entry const& gateway, CircuitTransition transition);
    bool stopped() const;

    // Releases a claim when it goes out of scope, unless disarmed.
    struct ClaimGuard {
        PaymentProcessor& processor;
        domain::PaymentId id;
        bool armed = true;
        void release_now() {
            if (std::exchange(armed, false)) processor.release(id);
        }
        ~ClaimGuard() { release_now(); }
    };
    // An attempt whose invoice stopped waiting for it (an operator's review
    // began): never sent now, yet settled: looked up first if it may have gone out.
    void settle_unsendable(domain::PaymentRequested const& requested, domain::Payment const& payment,
                           ClaimGuard& guard);

    Ports ports_;
    ProcessorOptions options_;
    Subscription subscription_;

    mutable std::mutex mutex_;
    mutable std::condition_variable idle_;
    std::unordered_set<domain::PaymentId> in_flight_;        // Owned by: mutex_
    std::unordered_map<domain::PaymentId, int> verifying_;   // Owned by: mutex_; look-ups made so far
    // In verifying_: an UNKNOWN whose verification could start neither on a
    // timer nor a post (verify_off_store_thread), left to the janitor. Erased
    // when its round starts the verification, when another process holds the
    // invoice, and when a whole round no longer finds the attempt owed an
    // answer: settled, here or elsewhere (review 24, F7).
    static constexpr int verify_by_janitor = -1;
    std::unordered_set<domain::PaymentId> janitor_marks() const;
    void forget_janitor_marks(std::unordered_set<domain::PaymentId> const& ids);
    std::unordered_set<domain::PaymentId> deferred_;         // Owned by: mutex_; held back by an open circuit or a full gateway
    // Attempts refused at a gateway's own limit, oldest first, and whether a
    // timer will send one again.
    struct WaitingForRoom {
        std::deque<domain::PaymentRequested> attempts;
        bool timer_armed = false;
    };
    std::unordered_map<Gateways::Entry const*, WaitingForRoom> waiting_for_room_; // Owned by: mutex_
    std::unordered_set<domain::PaymentId> sent_;             // Owned by: mutex_; charges sent, outcome not yet recorded
    std::unordered_set<domain::PaymentId> looked_up_;        // Owned by: mutex_; an earlier run's key, looked up, to send now
    std::size_t committing_ = 0;                             // Owned by: mutex_; settlements awaiting their commit
    bool janitor_armed_ = false;                             // Owned by: mutex_
    // Recovery's cursor over the store, the attempts it found and has not
    // started, and those it started whose claim is held.
    struct Recovery {
        std::size_t status = 0; // index into the statuses it reads
        std::optional<domain::InvoiceId> after;
        bool done = true;
        bool scanning = false; // a page is being read
        bool pumping = false;  // pump_recovery() runs
        std::deque<Redrive> found;
        std::unordered_set<domain::PaymentId> queued; // the payments of `found`, each queued once
        std::unordered_set<domain::PaymentId> running;
    };
    Recovery recovery_;                                      // Owned by: mutex_
    bool stopped_ = false;                                   // Owned by: mutex_
};

} // namespace payments::application
