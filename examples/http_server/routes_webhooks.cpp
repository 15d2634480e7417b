// POST /webhooks/psp: the provider's signed notices about our charges. A
// payment_intent.succeeded or payment_intent.payment_failed settles the
// attempt whose gateway key is in metadata.gateway_key, through the same
// settlement as a look-up's answer (PaymentProcessor::on_provider_notice).
#include "errors.hpp"
#include "routes.hpp"

#include <boost/json/parse.hpp>

#include <cctype>

namespace http_server {

namespace json = boost::json;
using namespace payments;
using namespace payments::domain;

namespace {

std::int64_t unix_seconds(Timestamp t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// The notice as we read it; nullopt when it is not the shape we take.
struct Notice {
    std::string event_id;
    std::string type;
    std::string intent_id;
    std::string gateway_key;
    std::optional<Money> amount;
    std::string failure;
};

std::optional<std::string> text_at(json::object const& object, std::string_view key, std::size_t max = 255) {
    auto const* v = object.if_contains(key);
    if (!v || !v->is_string() || v->as_string().empty() || v->as_string().size() > max) return std::nullopt;
    return std::string(v->as_string());
}

std::optional<Notice> read_notice(std::string_view body) {
    boost::system::error_code ec;
    json::value value = json::parse(body, ec);
    if (ec || !value.is_object()) return std::nullopt;
    auto const& event = value.as_object();
    Notice notice;
    auto id = text_at(event, "id");
    auto type = text_at(event, "type");
    if (!id || !type) return std::nullopt;
    notice.event_id = std::move(*id);
    notice.type = std::move(*type);
    if (notice.type != "payment_intent.succeeded" && notice.type != "payment_intent.payment_failed") return notice;
    auto const* data = event.if_contains("data");
    auto const* object = data && data->is_object() ? data->as_object().if_contains("object") : nullptr;
    if (!object || !object->is_object()) return std::nullopt;
    auto const& intent = object->as_object();
    auto const* metadata = intent.if_contains("metadata");
    auto intent_id = text_at(intent, "id");
    auto key = metadata && metadata->is_object() ? text_at(metadata->as_object(), "gateway_key") : std::nullopt;
    if (!intent_id || !key) return std::nullopt;
    notice.intent_id = std::move(*intent_id);
    notice.gateway_key = std::move(*key);
    if (notice.type == "payment_intent.succeeded") {
        // What was taken (docs/psp-protocol.md § Webhooks); `amount` (what was asked) if absent.
        auto const* amount = intent.if_contains("amount_received");
        if (!amount) amount = intent.if_contains("amount");
        auto currency = text_at(intent, "currency", 3);
        if (!amount || !amount->is_int64() || !currency) return std::nullopt;
        for (char& c : *currency) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        auto code = Currency::from_code(*currency);
        auto money = code ? Money::of(amount->as_int64(), *code) : code.error();
        if (!money) return std::nullopt;
        notice.amount = *money;
    } else {
        notice.failure = "the provider reported the payment failed";
        auto const* error = intent.if_contains("last_payment_error");
        if (error && error->is_object())
            if (auto message = text_at(error->as_object(), "message", 500)) notice.failure += ": " + *message;
    }
    return notice;
}

} // namespace

Reply psp_webhook(Context& context, Call& call) {
    WebhookOptions const& options = context.webhooks;
    if (options.secret.empty() || !context.seen_events)
        return problem_reply(http::status::not_found, "route_not_found", "no route for this path");
    auto& registry = context.engine.metrics();
    auto refuse = [&](std::string_view reason, std::string_view detail) {
        registry.counter("webhooks_rejected_total", "Provider notices refused, nothing changed", {{"reason", std::string(reason)}})
            .inc();
        return problem_reply(http::status::bad_request, reason, detail);
    };
    auto taken = [&](std::string_view outcome, json::object body) {
        registry.counter("webhooks_received_total", "Provider notices accepted, by what they did",
                         {{"outcome", std::string(outcome)}})
            .inc();
        body["status"] = outcome;
        return json_reply(http::status::ok, body);
    };
    std::int64_t const now = unix_seconds(context.engine.clock().now());
    SignatureCheck const check = check_signature(call.request["Stripe-Signature"], call.request.body(), options.secret,
                                                 now, options.tolerance);
    if (check != SignatureCheck::valid)
        return refuse(to_string(check), check == SignatureCheck::stale
                                            ? "the signature's timestamp is outside the tolerance"
                                            : "the Stripe-Signature header does not sign this body with our secret");
    auto notice = read_notice(call.request.body());
    if (!notice) return refuse("malformed_event", "the event is not a payment_intent notice we can read");
    if (!context.seen_events->first_time(notice->event_id, now)) return taken("duplicate", {});
    if (notice->type != "payment_intent.succeeded" && notice->type != "payment_intent.payment_failed")
        return taken("ignored", {{"type", notice->type}});
    auto const status = notice->amount ? application::ChargeStatus::booked(notice->intent_id, *notice->amount)
                                       : application::ChargeStatus::refused(notice->failure);
    auto settled = context.engine.processor().on_provider_notice("", notice->gateway_key, status);
    if (!settled) {
        if (settled.error().code == ErrorCode::not_found) return taken("unknown_attempt", {});
        context.seen_events->forget(notice->event_id); // the provider's retry may settle it
        return from_error(settled.error());
    }
    return taken("settled", {{"payment_status", to_string(*settled)}});
}

} // namespace http_server
