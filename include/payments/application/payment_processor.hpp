#pragma once

#include <payments/application/ports.hpp>
#include <payments/domain/retry_policy.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <unordered_set>

namespace payments::application {

struct ProcessorOptions {
    domain::RetryPolicy retry;
    /// A gateway call unanswered this long is an UNKNOWN_OUTCOME failure.
    domain::Duration gateway_timeout = std::chrono::seconds(10);
};

/// Charges each requested payment at the gateway, once, and settles the
/// outcome: the invoice is paid, the next attempt is scheduled on the bus
/// after a backoff, or the invoice fails. Redelivered and duplicated
/// PaymentRequested events never reach the gateway a second time. When the
/// last attempt of a cycle ends with an unknown outcome, the gateway is asked
/// what became of it (again and again, every retry.cap, until it answers)
/// before the invoice is settled.
class PaymentProcessor : public std::enable_shared_from_this<PaymentProcessor> {
    struct Private {};

public:
    /// Subscribes a new processor to PaymentRequested on `ports.bus`.
    static Result<std::shared_ptr<PaymentProcessor>> start(Ports ports, ProcessorOptions options);

    PaymentProcessor(Private, Ports ports, ProcessorOptions options);

    /// Unsubscribes; calls already at the gateway still settle.
    void stop();

    /// Gateway calls not yet settled.
    std::size_t in_flight() const;
    /// Waits until no gateway call is in flight; false at the deadline.
    bool wait_idle(std::chrono::steady_clock::time_point deadline) const;

private:
    void on_requested(domain::PaymentRequested const& requested);
    void on_outcome(domain::PaymentRequested const& requested, ChargeOutcome const& outcome,
                    domain::Timestamp started);
    bool must_verify(domain::PaymentRequested const& requested, ChargeOutcome const& outcome) const;
    void verify(domain::PaymentRequested const& requested);
    void settle_and_release(domain::PaymentRequested const& requested, ChargeOutcome const& outcome);
    Result<void> settle(domain::PaymentRequested const& requested, ChargeOutcome const& outcome);
    void report(domain::PaymentRequested const& requested, ChargeOutcome const& outcome,
                domain::Invoice const& invoice, bool invoice_settled);
    bool claim(domain::PaymentId const& id);
    void release(domain::PaymentId const& id);

    Ports ports_;
    ProcessorOptions options_;
    Subscription subscription_;

    mutable std::mutex mutex_;
    mutable std::condition_variable idle_;
    std::unordered_set<domain::PaymentId> in_flight_; // Owned by: mutex_
};

} // namespace payments::application
