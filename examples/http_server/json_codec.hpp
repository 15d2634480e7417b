#pragma once

#include "reply.hpp"

#include <payments/domain/invoice.hpp>
#include <payments/domain/payment.hpp>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/object.hpp>

#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace http_server {

/// The JSON representation of an invoice; `now` decides whether a retry is still ahead.
boost::json::value invoice_json(payments::domain::Invoice const& invoice, payments::domain::Timestamp now);

/// The JSON representation of a payment attempt.
boost::json::value payment_json(payments::domain::Payment const& payment);

/// One event of an invoice's history: its kind, envelope and what it says.
boost::json::value event_json(payments::domain::Event const& event);

/// The request's JSON object body, or the problem with it: a body that is not
/// application/json (415), not JSON or not an object (400 malformed_json), or
/// has a field outside `allowed` (400 unknown_field) or a key twice in one object (400 duplicate_field).
std::variant<boost::json::object, Reply> json_body(http::request<http::string_body> const& request,
                                                   std::initializer_list<std::string_view> allowed, bool required);

/// An optional string field: `fallback` when absent or null, 400 when not a string.
std::variant<std::string, Reply> string_field(boost::json::object const& body, std::string_view name,
                                              std::string fallback);

} // namespace http_server
