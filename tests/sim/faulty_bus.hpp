#pragma once
// An at-least-once transport with its usual misbehaviour, in front of the real
// bus: deliveries are lost (and redelivered later), duplicated, delayed past
// later ones, and handlers throw before or after doing their work.

#include <payments/application/clock.hpp>
#include <payments/application/event_bus.hpp>
#include <payments/infrastructure/system/seeded_random.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>

namespace sim {

using namespace std::chrono_literals;

/// Per-seed fault rates of the transport.
struct BusFaults {
    double drop = 0;          ///< lost, then redelivered after `redelivery`
    double duplicate = 0;     ///< delivered twice
    double delay = 0;         ///< delivered up to `max_delay` late, so later events overtake it
    double handler_throw = 0; ///< a handler call throws, before or after its work
    payments::domain::Duration redelivery = 30s;
    payments::domain::Duration max_delay = 5s;
};

/// How often each transport fault was injected.
struct BusFaultCounts {
    std::uint64_t dropped = 0, duplicated = 0, delayed = 0, thrown_before = 0, thrown_after = 0;
};

class FaultyBus final : public payments::application::EventBus {
public:
    FaultyBus(payments::application::EventBus& inner, payments::application::Clock const& clock, BusFaults faults,
              std::uint64_t seed)
        : inner_(inner), clock_(clock), faults_(faults), random_(seed) {}

    /// From now on, a perfectly reliable transport (the liveness phase).
    void stop_faults() { faults_ = BusFaults{}; }
    BusFaultCounts const& counts() const { return counts_; }

    bool publish(payments::domain::Event event) override { return deliver(std::move(event), clock_.now()); }

    bool schedule(payments::domain::Event event, payments::domain::Timestamp at) override {
        return deliver(std::move(event), at);
    }

    payments::application::Subscription subscribe_kind(
        std::size_t kind, std::string name, std::function<void(payments::domain::Event const&)> handler) override {
        return inner_.subscribe_kind(kind, std::move(name), [this, handler = std::move(handler)](auto const& event) {
            if (chance(faults_.handler_throw)) {
                bool const after = chance(0.5);
                if (after) handler(event); // the work is done, but the transport sees a failure
                ++(after ? counts_.thrown_after : counts_.thrown_before);
                throw std::runtime_error("injected handler failure");
            }
            handler(event);
        });
    }

    payments::application::Subscription subscribe_delivered(
        std::string name, std::function<void(payments::domain::Event const&)> handler) override {
        return inner_.subscribe_delivered(std::move(name), std::move(handler));
    }

private:
    bool chance(double p) { return p > 0 && unit() < p; }
    double unit() { return static_cast<double>(random_.next_u64() >> 11) * 0x1.0p-53; }
    payments::domain::Duration upto(payments::domain::Duration d) {
        return payments::domain::Duration(static_cast<payments::domain::Duration::rep>(
            random_.uniform(static_cast<std::uint64_t>(d.count()))));
    }

    bool deliver(payments::domain::Event event, payments::domain::Timestamp at) {
        bool const immediate = at <= clock_.now();
        auto send = [&](payments::domain::Event e, payments::domain::Timestamp when) {
            return when <= clock_.now() && immediate ? inner_.publish(std::move(e)) : inner_.schedule(std::move(e), when);
        };
        if (chance(faults_.drop)) {
            ++counts_.dropped;
            return send(std::move(event), at + faults_.redelivery);
        }
        if (chance(faults_.delay)) {
            ++counts_.delayed;
            at += upto(faults_.max_delay);
        }
        if (chance(faults_.duplicate)) {
            ++counts_.duplicated;
            send(event, at + upto(faults_.max_delay));
        }
        return send(std::move(event), at);
    }

    payments::application::EventBus& inner_;
    payments::application::Clock const& clock_;
    BusFaults faults_;
    payments::infrastructure::SeededRandom random_;
    BusFaultCounts counts_;
};

} // namespace sim
