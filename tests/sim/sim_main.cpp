// payments-sim: runs the deterministic simulation over many seeds, or replays one.
//
//   payments-sim --seeds 100000            seeds 1..100000
//   payments-sim --from 5000 --seeds 100   seeds 5000..5099
//   payments-sim --seconds 60              as many seeds as fit in 60 s of wall time
//   payments-sim --seed 1234 --verbose     one seed, with its event trace

#include "sim/simulation.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int usage() {
    std::fputs("usage: payments-sim [--seeds N] [--from S] [--seconds T] [--seed S [--verbose]]\n", stderr);
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    std::uint64_t from = 1, seeds = 1000;
    double budget = 0;
    bool verbose = false, single = false;
    for (int i = 1; i < argc; ++i) {
        auto value = [&]() -> char const* { return i + 1 < argc ? argv[++i] : nullptr; };
        char const* v = nullptr;
        if (!std::strcmp(argv[i], "--seeds") && (v = value())) seeds = std::strtoull(v, nullptr, 10);
        else if (!std::strcmp(argv[i], "--from") && (v = value())) from = std::strtoull(v, nullptr, 10);
        else if (!std::strcmp(argv[i], "--seconds") && (v = value())) budget = std::strtod(v, nullptr);
        else if (!std::strcmp(argv[i], "--seed") && (v = value())) from = std::strtoull(v, nullptr, 10), seeds = 1, single = true;
        else if (!std::strcmp(argv[i], "--verbose")) verbose = true;
        else return usage();
    }
    if (budget > 0) seeds = UINT64_MAX - from;

    auto const started = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
    sim::BusFaultCounts bus{};
    sim::GatewayFaultCounts gateway{};
    std::uint64_t circuits_opened = 0, charged_at_b = 0;
    std::uint64_t ran = 0, failing = 0, replayed = 0, deliveries = 0, paid = 0, failed = 0, needs_review = 0;
    double simulated = 0;
    for (std::uint64_t seed = from; seed - from < seeds; ++seed) {
        if (budget > 0 && elapsed() >= budget) break;
        sim::Outcome const o = sim::run(seed, {}, verbose && single);
        ++ran;
        bus.dropped += o.bus_faults.dropped;
        bus.duplicated += o.bus_faults.duplicated;
        bus.delayed += o.bus_faults.delayed;
        bus.thrown_before += o.bus_faults.thrown_before;
        bus.thrown_after += o.bus_faults.thrown_after;
        gateway.declined += o.gateway_faults.declined;
        gateway.transient += o.gateway_faults.transient;
        gateway.unknown_outcome += o.gateway_faults.unknown_outcome;
        gateway.lost_responses += o.gateway_faults.lost_responses;
        gateway.late_answers += o.gateway_faults.late_answers;
        gateway.late_bookings += o.gateway_faults.late_bookings;
        gateway.mismatches += o.gateway_faults.mismatches;
        gateway.lookups += o.gateway_faults.lookups;
        needs_review += static_cast<std::uint64_t>(o.needs_review);
        circuits_opened += o.circuits_opened;
        charged_at_b += o.charged_at_b;
        replayed += o.dead_letters_replayed;
        deliveries += o.deliveries;
        paid += static_cast<std::uint64_t>(o.paid);
        failed += static_cast<std::uint64_t>(o.failed);
        simulated += std::chrono::duration<double>(o.simulated).count();
        if (!o.violations.empty()) {
            ++failing;
            std::printf("seed %llu FAILED\n", static_cast<unsigned long long>(seed));
            for (auto const& v : o.violations) std::printf("  %s\n", v.c_str());
            std::printf("  replay: %s\n", sim::replay_command(seed).c_str());
        }
        if (single) std::printf("seed %llu: trace %016llx, %llu deliveries, %d paid, %d failed\n",
                                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(o.trace_hash),
                                static_cast<unsigned long long>(o.deliveries), o.paid, o.failed);
    }
    double const wall = elapsed();
    std::printf("seeds %llu (from %llu), failing %llu, wall %.1f s, %.0f seeds/s, simulated/wall %.0fx\n",
                static_cast<unsigned long long>(ran), static_cast<unsigned long long>(from),
                static_cast<unsigned long long>(failing), wall, static_cast<double>(ran) / wall, simulated / wall);
    std::printf("invoices paid %llu, failed %llu, needing an operator %llu; deliveries %llu; dead letters replayed %llu\n",
                static_cast<unsigned long long>(paid), static_cast<unsigned long long>(failed),
                static_cast<unsigned long long>(needs_review),
                static_cast<unsigned long long>(deliveries), static_cast<unsigned long long>(replayed));
    std::printf("circuits opened %llu; charges taken by the second gateway %llu\n",
                static_cast<unsigned long long>(circuits_opened), static_cast<unsigned long long>(charged_at_b));
    std::printf("bus faults: dropped %llu, duplicated %llu, delayed %llu, handler threw before %llu / after %llu\n",
                static_cast<unsigned long long>(bus.dropped), static_cast<unsigned long long>(bus.duplicated),
                static_cast<unsigned long long>(bus.delayed), static_cast<unsigned long long>(bus.thrown_before),
                static_cast<unsigned long long>(bus.thrown_after));
    std::printf("gateway faults: declined %llu, transient %llu, unknown outcome %llu (of which charged, answer lost %llu)\n",
                static_cast<unsigned long long>(gateway.declined), static_cast<unsigned long long>(gateway.transient),
                static_cast<unsigned long long>(gateway.unknown_outcome),
                static_cast<unsigned long long>(gateway.lost_responses));
    std::printf("provider unkindness: late answers used %llu, late bookings %llu, amount mismatches %llu; look-ups %llu\n",
                static_cast<unsigned long long>(gateway.late_answers),
                static_cast<unsigned long long>(gateway.late_bookings),
                static_cast<unsigned long long>(gateway.mismatches), static_cast<unsigned long long>(gateway.lookups));
    return failing == 0 ? 0 : 1;
}
