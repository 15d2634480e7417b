#pragma once

#include <payments/application/clock.hpp>
#include <payments/application/payment_gateway.hpp>
#include <payments/application/scheduler.hpp>
#include <payments/infrastructure/system/seeded_random.hpp>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace payments::infrastructure {

/// Outcomes of the simulated gateway for payment methods that do not name
/// one, and how unkind it is: like a real provider it answers late, loses
/// answers, books late, lags in its search and reports charges as still
/// processing for a while.
struct SimulatedGatewayOptions {
    double decline_rate = 0.0;       ///< answers DECLINED
    double transient_rate = 0.0;     ///< answers TRANSIENT, charges nothing
    double timeout_rate = 0.0;       ///< never answers, charges nothing
    double lost_response_rate = 0.0; ///< charges, but the answer is lost
    double late_answer_rate = 0.0;   ///< charges, and answers after `late_answer_delay` (past the caller's timeout)
    double late_booking_rate = 0.0;  ///< does not answer, and books the charge up to `booking_delay` later
    double mismatch_rate = 0.0;      ///< charges one minor unit more than asked (a provider's bug)
    domain::Duration latency_min{0};
    domain::Duration latency_max{0};
    domain::Duration late_answer_delay = std::chrono::seconds(30);
    domain::Duration booking_delay = std::chrono::seconds(20);
    /// A booking is invisible to look-ups for this long (search lag).
    domain::Duration search_lag{0};
    /// After that, look-ups answer PENDING for this long (still processing).
    domain::Duration processing_time{0};
    std::uint64_t seed = 1;
};

/// A successful charge in the gateway's own ledger.
struct GatewayCharge {
    std::string idempotency_key;
    domain::InvoiceId invoice_id;
    domain::PaymentId payment_id;
    domain::Money amount; ///< what was taken
    std::string reference;
    domain::Timestamp booked_at;
};

/// A payment service provider in memory, deterministic for a seed. Like a real
/// one it honours idempotency keys: a key that was answered is answered the
/// same way again, and never charges twice. Test payment methods:
///
/// | method                  | outcome                                                        |
/// |-------------------------|----------------------------------------------------------------|
/// | pm_card_ok              | charged                                                        |
/// | pm_card_declined        | DECLINED                                                       |
/// | pm_card_flaky_N         | TRANSIENT for the invoice's first N calls (1-9), then charged  |
/// | pm_card_unavailable     | always TRANSIENT                                               |
/// | pm_card_timeout         | never answers, charges nothing                                 |
/// | pm_card_lost_response   | charges, but the answer is lost                                |
/// | pm_card_late_answer     | charges, answers after `late_answer_delay`                     |
/// | pm_card_late_booking    | never answers; books the charge `booking_delay` later          |
/// | pm_card_processing      | charges, answer lost; look-ups say PENDING for 60 s            |
/// | pm_card_amount_mismatch | charges one minor unit more than asked                         |
/// | (empty), pm_card_random | the configured rates                                           |
/// | anything else           | DECLINED: unknown payment method                               |
class SimulatedGateway final : public application::PaymentGateway {
public:
    /// `ledger_path`: a file that keeps the ledger outside the process: every
    /// charge is appended and fsynced as it is booked, and read back here, so
    /// that a key charged before a crash is answered the same way after it (as
    /// a real provider would). Empty: the ledger lives in memory only.
    SimulatedGateway(application::Scheduler& scheduler, application::Clock const& clock,
                     SimulatedGatewayOptions options = {}, std::string const& ledger_path = {});
    ~SimulatedGateway() override;
    SimulatedGateway(SimulatedGateway const&) = delete;
    SimulatedGateway& operator=(SimulatedGateway const&) = delete;

    void charge(application::ChargeRequest request,
                std::function<void(application::ChargeAnswer)> on_answer) override;
    /// Answers from the gateway's own records as its search sees them, after
    /// the configured latency.
    void lookup(std::string idempotency_key, std::function<void(application::ChargeStatus)> on_answer) override;

    /// Replaces the rates and latency (the simulation stops its faults this way);
    /// answers already given for a key stay as they were.
    void set_options(SimulatedGatewayOptions options);

    /// Every successful charge, in order.
    std::vector<GatewayCharge> ledger() const;
    /// Successful charges of one invoice: more than one is a double charge.
    std::size_t charges_for(domain::InvoiceId const& invoice) const;
    /// charge() calls received, answered or not.
    std::size_t calls() const;
    /// The idempotency keys of charge() calls in arrival order.
    std::vector<std::string> keys_seen() const;
    /// Charges booked late that are not booked yet.
    std::size_t bookings_pending() const;
    /// Charges booked late so far.
    std::size_t late_bookings() const;

private:
    struct Decision {
        std::optional<application::ChargeAnswer> answer; // empty: never answers
        domain::Duration extra_delay{0};                   // on top of the latency
    };
    // What a key stands for: its answer, and when a look-up may see it.
    struct Record {
        application::ChargeAnswer outcome;
        domain::Timestamp visible_at;
        domain::Timestamp final_at;
    };

    Decision decide_locked(application::ChargeRequest const& request);
    domain::Duration latency_locked();
    application::ChargeAnswer book_locked(application::ChargeRequest const& request, domain::Money amount,
                                           domain::Duration processing);
    application::ChargeAnswer remember_locked(application::ChargeRequest const& request,
                                               application::ChargeAnswer outcome);
    void book_later_locked(application::ChargeRequest const& request, domain::Duration delay);

    application::Scheduler& scheduler_;
    application::Clock const& clock_;
    SimulatedGatewayOptions options_; // Owned by: mutex_
    SeededRandom random_;

    mutable std::mutex mutex_;
    std::vector<GatewayCharge> ledger_;                          // Owned by: mutex_
    std::unordered_map<std::string, Record> answered_;           // Owned by: mutex_; by key
    std::unordered_map<domain::InvoiceId, int> transient_failures_; // Owned by: mutex_
    std::vector<std::string> keys_seen_;                         // Owned by: mutex_
    std::size_t bookings_pending_ = 0;                           // Owned by: mutex_
    std::size_t late_bookings_ = 0;                              // Owned by: mutex_
    std::string ledger_path_;
    int ledger_fd_ = -1;                                         // Owned by: mutex_; the ledger file, if any
};

} // namespace payments::infrastructure
