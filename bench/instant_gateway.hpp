#pragma once
// The gateway of the flow figures: it charges at once, on the caller's
// thread, so that a flow's cost is the library's (and the disk's) alone.

#include <payments/application/payment_gateway.hpp>

#include <functional>
#include <string>

namespace bench {

class InstantGateway final : public payments::application::PaymentGateway {
public:
    void charge(payments::application::ChargeRequest request,
                std::function<void(payments::application::ChargeAnswer)> on_answer) override {
        on_answer(payments::application::ChargeAnswer::success("ch_" + request.idempotency_key, request.amount));
    }
    void lookup(std::string, std::function<void(payments::application::ChargeStatus)> on_answer) override {
        on_answer(payments::application::ChargeStatus::not_found());
    }
};

} // namespace bench
