// payments-bench FIGURE [--quick]: measures one figure of docs/performance.md
// and prints its table rows; scripts/bench runs every figure and the server ones.
#include "figures.hpp"

#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>

int main(int argc, char** argv) {
    struct Figure {
        std::string_view name;
        void (*run)(bench::Options const&);
    };
    static constexpr Figure figures[] = {{"bus", bench::figure_bus},
                                         {"handoff", bench::figure_handoff},
                                         {"timers", bench::figure_timers},
                                         {"flow", bench::figure_flow},
                                         {"durable", bench::figure_durable},
                                         {"durable-scale", bench::figure_durable_scale},
                                         {"gateway", bench::figure_gateway}};
    bench::Options options;
    std::string_view wanted;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0)
            options.quick = true;
        else
            wanted = argv[i];
    }
    bool found = false;
    try {
        for (Figure const& figure : figures) {
            if (wanted.empty() || wanted == figure.name) {
                figure.run(options);
                found = true;
            }
        }
    } catch (std::exception const& e) {
        std::fprintf(stderr, "payments-bench: %s\n", e.what());
        return 1;
    }
    if (!found) {
        std::fprintf(stderr, "usage: payments-bench [bus|handoff|timers|flow|durable|durable-scale|gateway] [--quick]\n");
        return 2;
    }
    return 0;
}
