#include "json_codec.hpp"

#include "errors.hpp"

#include <payments/infrastructure/time_format.hpp>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <optional>

namespace http_server {

namespace json = boost::json;
using namespace payments::domain;
using payments::infrastructure::format_rfc3339;

namespace {

json::value failure_json(std::optional<Failure> const& failure) {
    if (!failure) return nullptr;
    return json::object{{"kind", to_string(failure->kind)}, {"reason", failure->reason}};
}

bool is_json(http::request<http::string_body> const& request) {
    std::string_view type = request[http::field::content_type];
    type = type.substr(0, type.find(';'));
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    std::string lower(type);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    return lower == "application/json";
}

} // namespace

json::value invoice_json(Invoice const& i, Timestamp now) {
    json::value next_retry = nullptr;
    if (i.next_retry_at() && *i.next_retry_at() > now) next_retry = json::string(format_rfc3339(*i.next_retry_at()));
    return json::object{{"id", i.id().str()},
                        {"amount", i.amount().minor_units()},
                        {"currency", i.amount().currency().code()},
                        {"description", i.description()},
                        {"status", to_string(i.status())},
                        {"attempts", i.current_attempt()},
                        {"next_retry_at", next_retry},
                        {"last_failure", failure_json(i.last_failure())},
                        {"created_at", format_rfc3339(i.created_at())},
                        {"updated_at", format_rfc3339(i.updated_at())}};
}

json::value payment_json(Payment const& p) {
    return json::object{{"id", p.id().str()},
                        {"invoice_id", p.invoice_id().str()},
                        {"attempt", p.attempt()},
                        {"amount", p.amount().minor_units()},
                        {"currency", p.amount().currency().code()},
                        {"payment_method", p.payment_method().empty() ? json::value(nullptr) : json::value(p.payment_method())},
                        {"status", to_string(p.status())},
                        {"failure", failure_json(p.failure())},
                        {"gateway_reference",
                         p.gateway_reference().empty() ? json::value(nullptr) : json::value(p.gateway_reference())},
                        {"created_at", format_rfc3339(p.created_at())},
                        {"updated_at", format_rfc3339(p.updated_at())}};
}

std::variant<json::object, Reply> json_body(http::request<http::string_body> const& request,
                                            std::initializer_list<std::string_view> allowed, bool required) {
    if (request.body().empty()) {
        if (required) return problem_reply(http::status::bad_request, "malformed_json", "a JSON object body is required");
        return json::object{};
    }
    if (!is_json(request))
        return problem_reply(http::status::unsupported_media_type, "unsupported_media_type",
                             "the body must be application/json");
    boost::system::error_code ec;
    json::value value = json::parse(request.body(), ec);
    if (ec) return problem_reply(http::status::bad_request, "malformed_json", "the body is not valid JSON: " + ec.message());
    if (!value.is_object()) return problem_reply(http::status::bad_request, "malformed_json", "the body must be a JSON object");
    for (auto const& [key, unused] : value.as_object())
        if (std::find(allowed.begin(), allowed.end(), std::string_view(key)) == allowed.end())
            return problem_reply(http::status::bad_request, "unknown_field",
                                 "unknown field '" + std::string(key) + "'");
    return std::move(value.as_object());
}

std::variant<std::string, Reply> string_field(json::object const& body, std::string_view name, std::string fallback) {
    auto const* v = body.if_contains(name);
    if (v == nullptr || v->is_null()) return fallback;
    if (!v->is_string())
        return problem_reply(http::status::bad_request, "invalid_argument", std::string(name) + " must be a string");
    return std::string(v->as_string());
}

} // namespace http_server
