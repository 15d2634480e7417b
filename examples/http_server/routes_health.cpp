// GET /health, /health/live, /health/ready, /metrics.
#include "routes.hpp"

#include <boost/json/object.hpp>

namespace http_server {

namespace json = boost::json;

Reply health(Context&, Call&) { return json_reply(http::status::ok, json::object{{"status", "ok"}}); }

Reply ready(Context& context, Call&) {
    switch (context.readiness.load()) {
    case Readiness::ready: return json_reply(http::status::ok, json::object{{"status", "ready"}});
    case Readiness::starting: return json_reply(http::status::service_unavailable, json::object{{"status", "starting"}});
    case Readiness::draining: return json_reply(http::status::service_unavailable, json::object{{"status", "draining"}});
    }
    return json_reply(http::status::service_unavailable, json::object{{"status", "unknown"}});
}

Reply metrics(Context& context, Call&) {
    return {http::status::ok, context.engine.metrics().render(), "text/plain; version=0.0.4", {}};
}

} // namespace http_server
