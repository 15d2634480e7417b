#pragma once

#include <boost/beast/http/status.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <utility>
#include <vector>

namespace http_server {

namespace http = boost::beast::http;

/// What a handler answers, before the common headers are added.
struct Reply {
    http::status status = http::status::ok;
    std::string body;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;
};

/// A JSON answer.
inline Reply json_reply(http::status status, boost::json::value const& value) {
    return {status, boost::json::serialize(value), "application/json", {}};
}

} // namespace http_server
