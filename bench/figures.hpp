#pragma once

namespace bench {

struct Options {
    bool quick = false; ///< smaller counts: a smoke run, not a measurement
};

void figure_bus(Options const& options);
void figure_handoff(Options const& options);
void figure_timers(Options const& options);
void figure_flow(Options const& options);
void figure_durable(Options const& options);
void figure_durable_scale(Options const& options);
void figure_gateway(Options const& options);

} // namespace bench
