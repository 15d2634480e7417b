// POST /invoices/{id}/pay, GET /invoices/{id}/payments, GET /payments/{id}.
#include "errors.hpp"
#include "json_codec.hpp"
#include "routes.hpp"

namespace http_server {

namespace json = boost::json;
using namespace payments;
using namespace payments::domain;

void pay_invoice(Context& context, Call& call, Respond respond) {
    auto id = InvoiceId::parse(call.params[0]);
    if (!id) return respond(problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]));
    auto body = json_body(call.request, {"payment_method"}, false);
    if (auto* bad = std::get_if<Reply>(&body)) return respond(std::move(*bad));
    auto method = string_field(std::get<json::object>(body), "payment_method", "");
    if (auto* bad = std::get_if<Reply>(&method)) return respond(std::move(*bad));
    application::RequestPayment command{*id, std::get<std::string>(method), std::nullopt, call.correlation_id};
    if (auto header = call.request.find("Idempotency-Key"); header != call.request.end()) {
        auto key = application::IdempotencyKey::make(std::string(call.request["X-Client-Id"]), std::string(header->value()));
        if (!key)
            return respond(problem_reply(http::status::bad_request, "invalid_idempotency_key", key.error().detail));
        command.idempotency_key = *key;
    }
    context.engine.service().request_payment_async(
        std::move(command), [respond = std::move(respond)](application::PaymentRequestReply outcome) {
            Reply reply = outcome.result ? json_reply(http::status::accepted, payment_json(*outcome.result))
                                         : from_error(outcome.result.error());
            if (outcome.result)
                reply.headers.emplace_back("Location", "/payments/" + std::string(outcome.result->id().str()));
            if (outcome.replayed) reply.headers.emplace_back("Idempotent-Replayed", "true");
            respond(std::move(reply));
        });
}

Reply list_payments(Context& context, Call& call) {
    auto id = InvoiceId::parse(call.params[0]);
    if (!id) return problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]);
    auto payments = context.engine.service().payments_of(*id);
    if (!payments) return from_error(payments.error());
    json::array data;
    for (Payment const& p : *payments) data.push_back(payment_json(p));
    return json_reply(http::status::ok, json::object{{"data", std::move(data)}});
}

Reply get_payment(Context& context, Call& call) {
    auto id = PaymentId::parse(call.params[0]);
    if (!id) return problem_reply(http::status::not_found, "not_found", "no payment " + call.params[0]);
    auto payment = context.engine.service().payment(*id);
    if (!payment) return from_error(payment.error());
    return json_reply(http::status::ok, payment_json(*payment));
}

} // namespace http_server
