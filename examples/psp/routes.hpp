#pragma once

#include "faults.hpp"
#include "ledger.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

namespace psp {

/// The provider's settings (see `payments-psp --help`).
struct ProviderOptions {
    std::string ledger_path = ":memory:";
    std::string secret_key;                              ///< empty: any non-empty bearer key is accepted
    std::chrono::milliseconds late_answer_delay{30'000}; ///< pm_card_late_answer answers this late
    std::chrono::milliseconds booking_delay{20'000};     ///< late bookings happen this much later
    std::chrono::milliseconds search_lag{0};             ///< the search sees a charge this much after it is booked
    std::chrono::milliseconds processing_time{60'000};   ///< pm_card_processing is "processing" this long
    FaultOptions faults;
    /// The provider's clock in Unix milliseconds; tests inject one to drive late bookings and search lag.
    std::function<std::int64_t()> now_ms;
};

/// One HTTP request as the routes see it.
struct Request {
    std::string method;
    std::string target;
    std::string body;
    std::string authorization;
    std::string idempotency_key;
};

/// What to do with a request: answer it (perhaps late), reset the connection, or never answer.
struct Action {
    enum class How { answer, reset, hold } how = How::answer;
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    std::chrono::milliseconds delay{0};

    /// A reset or a hold: no answer.
    static Action without_answer(How how) { return Action{how, 0, {}, {}, {}}; }
};

/// A booking the webhook sender should announce: the intent and the event type.
using FinalStateListener = std::function<void(Intent const &)>;

/// The PaymentIntents subset of docs/psp-protocol.md over the ledger, with the
/// test cards of the in-process SimulatedGateway. Thread-safe.
class Provider {
public:
    explicit Provider(ProviderOptions options);

    Action handle(Request const &request);
    /// Called for each intent that reached a final state (booked or failed), with its booking time.
    void on_final_state(FinalStateListener listener) { listener_ = std::move(listener); }
    std::int64_t now_ms() const { return options_.now_ms(); }
    Ledger &ledger() { return ledger_; }

private:
    Action create(Request const &request);
    Action decide(Request const &request, Intent intent, std::string const &method, FaultDraw const &faults);
    Action answer_for(Intent const &intent);
    Action retrieve(std::string const &id);
    Action search(std::string const &query);
    Action metrics();

    ProviderOptions options_;
    Ledger ledger_;
    Faults faults_;
    FinalStateListener listener_;
    std::mutex mutex_;
    std::unordered_map<std::string, int> flaky_failures_; // Owned by: mutex_; by invoice
};

/// Stripe's error shape: {"error": {"type", "code", "message"}}.
Action error_action(int status, std::string const &type, std::string const &code, std::string const &message);

} // namespace psp
