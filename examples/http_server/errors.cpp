#include "errors.hpp"

#include <boost/json/object.hpp>

namespace http_server {

namespace json = boost::json;
using payments::ErrorCode;

Reply problem_reply(http::status status, std::string_view code, std::string_view detail) {
    json::object body{{"type", "/problems/" + std::string(code)},
                      {"title", std::string(http::obsolete_reason(status))},
                      {"status", static_cast<int>(status)},
                      {"detail", detail},
                      {"code", code}};
    return {status, json::serialize(body), "application/problem+json", {}};
}

Reply from_error(payments::Error const& error) {
    struct Mapping {
        http::status status;
        std::string_view code;
    };
    auto const m = [&]() -> Mapping {
        switch (error.code) {
        case ErrorCode::invalid_argument: return {http::status::bad_request, "invalid_argument"};
        case ErrorCode::invalid_amount: return {http::status::bad_request, "invalid_amount"};
        case ErrorCode::unknown_currency: return {http::status::bad_request, "unknown_currency"};
        case ErrorCode::currency_mismatch: return {http::status::bad_request, "currency_mismatch"};
        case ErrorCode::overflow: return {http::status::bad_request, "overflow"};
        case ErrorCode::invalid_state: return {http::status::conflict, "invalid_state"};
        case ErrorCode::not_found: return {http::status::not_found, "not_found"};
        case ErrorCode::already_exists: return {http::status::conflict, "invoice_exists"};
        case ErrorCode::invoice_already_paid: return {http::status::conflict, "invoice_already_paid"};
        case ErrorCode::payment_in_progress: return {http::status::conflict, "payment_in_progress"};
        case ErrorCode::stale_attempt: return {http::status::conflict, "stale_attempt"};
        case ErrorCode::conflict: return {http::status::conflict, "conflict"};
        case ErrorCode::idempotency_key_reused: return {http::status::unprocessable_entity, "idempotency_key_reused"};
        case ErrorCode::idempotency_key_in_use: return {http::status::conflict, "idempotency_key_in_use"};
        case ErrorCode::unavailable: return {http::status::service_unavailable, "unavailable"};
        case ErrorCode::storage_unavailable: return {http::status::service_unavailable, "storage_unavailable"};
        }
        return {http::status::internal_server_error, "internal"};
    }();
    return problem_reply(m.status, m.code, error.detail);
}

} // namespace http_server
