// GET /health, /health/live, /health/ready, /metrics.
#include "routes.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <algorithm>

namespace http_server {

namespace json = boost::json;

Reply health(Context&, Call&) { return json_reply(http::status::ok, json::object{{"status", "ok"}}); }

namespace {

// Each gateway's circuit, in order of preference.
json::array gateways_json(payments::Engine& engine) {
    json::array all;
    for (auto const& g : engine.gateway_health())
        all.push_back(json::object{{"name", g.name}, {"circuit", to_string(g.state)}, {"usable", g.usable}});
    return all;
}

} // namespace

// Open circuits do not make the server unready: requests are still recorded
// and their charges wait (deferred) or move to another gateway, and every
// instance shares the same providers, so taking this one out of rotation
// would only refuse work. "degraded" says that no gateway is usable now.
Reply ready(Context& context, Call&) {
    switch (context.readiness.load()) {
    case Readiness::ready: {
        // Every write would be refused (503) until the store decides an earlier commit.
        if (!context.engine.store_writable())
            return json_reply(http::status::service_unavailable, json::object{{"status", "store_unavailable"}});
        // Ready once recovery has started everything an earlier run left.
        if (context.engine.recovering())
            return json_reply(http::status::service_unavailable, json::object{{"status", "recovering"}});
        json::array gateways = gateways_json(context.engine);
        bool const usable = std::any_of(gateways.begin(), gateways.end(),
                                        [](json::value const& g) { return g.at("usable").as_bool(); });
        return json_reply(http::status::ok,
                          json::object{{"status", "ready"}, {"degraded", !usable}, {"gateways", std::move(gateways)}});
    }
    case Readiness::starting: return json_reply(http::status::service_unavailable, json::object{{"status", "starting"}});
    case Readiness::draining: return json_reply(http::status::service_unavailable, json::object{{"status", "draining"}});
    }
    return json_reply(http::status::service_unavailable, json::object{{"status", "unknown"}});
}

Reply metrics(Context& context, Call&) {
    return {http::status::ok, context.engine.metrics().render(), "text/plain; version=0.0.4", {}};
}

} // namespace http_server
