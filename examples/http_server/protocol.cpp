#include "protocol.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include <sstream>

namespace http_server {

namespace beast = boost::beast;

namespace {

// Headers whose meaning breaks if they are sent twice.
constexpr std::string_view singleton_headers[] = {"Host", "Content-Type", "Idempotency-Key", "X-Client-Id",
                                                  "X-Request-Id", "Expect"};

// Transfer codings, of every Transfer-Encoding line in order: chunked once, last.
std::optional<Refusal> check_transfer_encoding(http::request_header<> const& header) {
    auto const [first, last] = header.equal_range(http::field::transfer_encoding);
    if (first == last) return std::nullopt;
    if (header.count(http::field::content_length) != 0)
        return Refusal{http::status::bad_request, "bad_framing",
                       "Transfer-Encoding and Content-Length together (RFC 9112 §6.3)"};
    int codings = 0;
    bool chunked_last = false;
    int chunked = 0;
    for (auto it = first; it != last; ++it) {
        for (auto coding : http::token_list{it->value()}) {
            ++codings;
            chunked_last = beast::iequals(coding, "chunked");
            if (!chunked_last)
                return Refusal{http::status::not_implemented, "unsupported_transfer_encoding",
                               "transfer coding '" + std::string(coding) + "' is not supported; only chunked is"};
            ++chunked;
        }
    }
    if (codings == 0 || !chunked_last || chunked != 1)
        return Refusal{http::status::bad_request, "bad_framing", "chunked must be the one and final transfer coding"};
    return std::nullopt;
}

} // namespace

std::optional<Refusal> check_header(http::request_header<> const& header, Limits const& limits) {
    if (header.target().size() > limits.uri)
        return Refusal{http::status::uri_too_long, "uri_too_long",
                       "the request target is longer than " + std::to_string(limits.uri) + " bytes"};
    auto const hosts = header.count(http::field::host);
    if (hosts > 1 || (hosts == 0 && header.version() >= 11))
        return Refusal{http::status::bad_request, "bad_host", "an HTTP/1.1 request needs exactly one Host header"};
    for (std::string_view name : singleton_headers)
        if (header.count(name) > 1)
            return Refusal{http::status::bad_request, "duplicate_header", "the " + std::string(name) + " header is sent twice"};
    if (auto bad = check_transfer_encoding(header)) return bad;
    if (auto expect = header.find(http::field::expect);
        expect != header.end() && !beast::iequals(expect->value(), "100-continue"))
        return Refusal{http::status::expectation_failed, "expectation_failed", "only Expect: 100-continue is supported"};
    return std::nullopt;
}

Refusal refusal_for(beast::error_code ec, http::request_header<> const& partial, Limits const& limits) {
    if (ec == http::error::body_limit)
        return {http::status::payload_too_large, "payload_too_large",
                "the body is larger than " + std::to_string(limits.body) + " bytes"};
    if (ec == http::error::header_limit) {
        if (partial.target().empty() || partial.target().size() > limits.uri)
            return {http::status::uri_too_long, "uri_too_long",
                    "the request line is longer than " + std::to_string(limits.uri) + " bytes"};
        return {http::status::request_header_fields_too_large, "headers_too_large", "the header block is too large"};
    }
    return {http::status::bad_request, "bad_request", "malformed HTTP: " + ec.message()};
}

bool expects_continue(http::request_header<> const& header) {
    auto const expect = header.find(http::field::expect);
    return expect != header.end() && beast::iequals(expect->value(), "100-continue");
}

std::size_t leading_empty_lines(std::string_view received) {
    std::size_t n = 0;
    while (true) {
        if (received.substr(n).starts_with("\r\n")) n += 2;
        else if (received.substr(n).starts_with("\n")) n += 1;
        else return n;
    }
}

namespace {

void append(std::string& out, Response& response) {
    std::ostringstream os;
    os << response;
    out += os.str();
}

} // namespace

std::string serve_bytes(Api& api, std::string_view input, Limits const& limits) {
    std::string out;
    while (true) {
        input.remove_prefix(leading_empty_lines(input));
        if (input.empty()) return out;
        RequestParser parser;
        parser.body_limit(limits.body);
        parser.header_limit(static_cast<std::uint32_t>(limits.header));
        parser.eager(false);
        beast::error_code ec;
        // The header first, as a session reads it, then the body.
        while (!ec && !parser.is_header_done()) {
            auto const used = parser.put(boost::asio::buffer(input.data(), input.size()), ec);
            input.remove_prefix(used);
            if (ec == http::error::need_more) {
                auto response = api.refuse({http::status::bad_request, "bad_request", "the request ends early"}, nullptr);
                append(out, response);
                return out;
            }
        }
        if (ec) {
            auto response = api.refuse(refusal_for(ec, parser.get(), limits), parser.got_some() ? &parser.get() : nullptr);
            append(out, response);
            return out;
        }
        if (auto refusal = check_header(parser.get(), limits)) {
            auto response = api.refuse(*refusal, &parser.get());
            append(out, response);
            return out;
        }
        if (expects_continue(parser.get())) out += "HTTP/1.1 100 Continue\r\n\r\n";
        parser.eager(true);
        while (!ec && !parser.is_done()) {
            if (input.empty()) {
                parser.put_eof(ec);
                if (!ec) ec = http::error::partial_message;
                break;
            }
            auto const used = parser.put(boost::asio::buffer(input.data(), input.size()), ec);
            input.remove_prefix(used);
            if (ec == http::error::need_more) ec = {};
            if (used == 0 && !ec && !parser.is_done()) ec = http::error::partial_message;
        }
        if (ec) {
            auto response = api.refuse(refusal_for(ec, parser.get(), limits), &parser.get());
            append(out, response);
            return out;
        }
        auto response = api.handle(parser.get());
        bool const keep_alive = response.keep_alive();
        append(out, response);
        if (!keep_alive) return out;
    }
}

} // namespace http_server
