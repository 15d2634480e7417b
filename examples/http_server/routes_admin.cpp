// The operator's routes, behind `Authorization: Bearer <admin token>`:
// GET /admin/reviews, POST /admin/invoices/{id}/resolve,
// GET /admin/dead-letters, POST /admin/dead-letters/replay.
#include "errors.hpp"
#include "json_codec.hpp"
#include "routes.hpp"

#include <payments/infrastructure/bus/asio_event_bus.hpp>
#include <payments/infrastructure/observability/time_format.hpp>

#include <optional>

namespace http_server {

namespace json = boost::json;
using namespace payments;
using namespace payments::domain;

namespace {

// Compares in time that depends on the expected token's length only, not on
// where the given one first differs.
bool same_token(std::string_view given, std::string_view expected) {
    unsigned char difference = given.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        char const g = i < given.size() ? given[i] : '\0';
        difference |= static_cast<unsigned char>(g ^ expected[i]);
    }
    return difference == 0;
}

// Nothing when the caller may go on; else the answer: 404 while the routes
// are off (an unset token does not admit an empty one), 401 without the token.
std::optional<Reply> refuse_unless_operator(Context const& context, Call const& call) {
    if (context.admin_token.empty())
        return problem_reply(http::status::not_found, "route_not_found", "no route for this path");
    constexpr std::string_view scheme = "Bearer ";
    std::string_view const header = call.request[http::field::authorization];
    if (header.starts_with(scheme) && same_token(header.substr(scheme.size()), context.admin_token)) return std::nullopt;
    Reply reply = problem_reply(http::status::unauthorized, "unauthorized", "the operator routes need the admin bearer token");
    reply.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"payments-admin\"");
    return reply;
}

} // namespace

Reply list_reviews(Context& context, Call& call) {
    if (auto refused = refuse_unless_operator(context, call)) return std::move(*refused);
    return invoice_page(context, call, InvoiceStatus::needs_review);
}

Reply resolve_review(Context& context, Call& call) {
    if (auto refused = refuse_unless_operator(context, call)) return std::move(*refused);
    auto id = InvoiceId::parse(call.params[0]);
    if (!id) return problem_reply(http::status::not_found, "not_found", "no invoice " + call.params[0]);
    auto body = json_body(call.request, {"charged", "reference"}, true);
    if (auto* bad = std::get_if<Reply>(&body)) return std::move(*bad);
    auto const& object = std::get<json::object>(body);
    auto const* charged = object.if_contains("charged");
    if (charged == nullptr || !charged->is_bool())
        return problem_reply(http::status::bad_request, "invalid_argument", "charged must be true or false");
    auto reference = string_field(object, "reference", "");
    if (auto* bad = std::get_if<Reply>(&reference)) return std::move(*bad);
    ReviewDecision decision{charged->as_bool(), std::get<std::string>(reference)};
    if (!decision.charged && !decision.reference.empty())
        return problem_reply(http::status::bad_request, "invalid_argument", "a reference goes with charged: true only");
    auto resolved = context.engine.service().resolve_review({*id, std::move(decision), call.correlation_id});
    if (!resolved) return from_error(resolved.error());
    return json_reply(http::status::ok, invoice_json(*resolved, context.engine.clock().now()));
}

Reply list_dead_letters(Context& context, Call& call) {
    if (auto refused = refuse_unless_operator(context, call)) return std::move(*refused);
    json::array data;
    for (auto const& letter : context.engine.asio_bus().dead_letters()) {
        EventEnvelope const& envelope = envelope_of(letter.event);
        data.push_back(json::object{{"event", event_name(letter.event)},
                                    {"event_id", envelope.id.str()},
                                    {"invoice_id", envelope.invoice_id.str()},
                                    {"payment_id", envelope.payment_id.empty() ? json::value(nullptr)
                                                                               : json::value(envelope.payment_id.str())},
                                    {"subscriber", letter.subscriber},
                                    {"error", letter.error},
                                    {"attempts", letter.attempts},
                                    {"at", infrastructure::format_rfc3339(letter.at)}});
    }
    return json_reply(http::status::ok, json::object{{"data", std::move(data)}});
}

Reply replay_dead_letters(Context& context, Call& call) {
    if (auto refused = refuse_unless_operator(context, call)) return std::move(*refused);
    auto const replayed = context.engine.asio_bus().replay_dead_letters();
    context.engine.logger().warn("an operator replayed dead letters", {{"count", static_cast<std::int64_t>(replayed)}});
    return json_reply(http::status::ok, json::object{{"replayed", replayed}});
}

} // namespace http_server
