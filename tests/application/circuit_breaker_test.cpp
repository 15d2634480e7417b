#include "support/builders.hpp"

#include <payments/application/circuit_breaker.hpp>
#include <payments/application/gateways.hpp>

#include <doctest/doctest.h>

using namespace test;
using namespace payments::application;

namespace {

constexpr BreakerOptions small{.window = 4, .minimum_calls = 4, .failure_ratio = 0.5, .open_for = 30s,
                               .half_open_probes = 1};

// Sends one call and records its result; returns the transition, if any.
std::optional<CircuitTransition> call(CircuitBreaker& breaker, bool failure, Timestamp now = t0()) {
    auto permit = breaker.acquire(now);
    REQUIRE(permit.granted);
    return breaker.record(permit.generation, failure, now);
}

} // namespace

SCENARIO("a circuit opens on the share of provider failures in its window, never on fewer calls than the minimum") {
    GIVEN("a breaker counting the last 4 calls, opening at half of them failed") {
        CircuitBreaker breaker(small);
        WHEN("three calls in a row fail") {
            for (int i = 0; i < 3; ++i) CHECK_FALSE(call(breaker, true));
            THEN("it stays closed: three is under the minimum") { CHECK(breaker.state(t0()) == CircuitState::closed); }
            AND_WHEN("a fourth succeeds") {
                auto moved = call(breaker, false);
                THEN("three of four failed: it opens, and refuses calls until the open time has passed") {
                    REQUIRE(moved);
                    CHECK(moved->from == CircuitState::closed);
                    CHECK(moved->to == CircuitState::open);
                    auto refused = breaker.acquire(t0() + 29s);
                    CHECK_FALSE(refused.granted);
                    CHECK(refused.retry_at == t0() + 30s);
                    CHECK_FALSE(breaker.usable(t0() + 29s));
                }
            }
        }
        WHEN("one call in four fails, over and over") {
            for (int i = 0; i < 20; ++i) CHECK_FALSE(call(breaker, i % 4 == 0));
            THEN("it stays closed") { CHECK(breaker.state(t0()) == CircuitState::closed); }
        }
    }
}

SCENARIO("a half-open circuit lets one probe through, and its success closes the circuit, its failure opens it again") {
    GIVEN("an open circuit") {
        CircuitBreaker breaker(small);
        for (int i = 0; i < 4; ++i) call(breaker, true);
        REQUIRE(breaker.state(t0()) == CircuitState::open);
        WHEN("the open time has passed") {
            Timestamp const later = t0() + 30s;
            CHECK(breaker.state(later) == CircuitState::half_open);
            CHECK(breaker.usable(later));
            auto probe = breaker.acquire(later);
            THEN("one probe goes out, a second call waits") {
                REQUIRE(probe.granted);
                REQUIRE(probe.transition);
                CHECK(probe.transition->to == CircuitState::half_open);
                CHECK_FALSE(breaker.acquire(later).granted);
                CHECK_FALSE(breaker.usable(later));
            }
            AND_WHEN("the probe succeeds") {
                auto moved = breaker.record(probe.generation, false, later);
                THEN("the circuit closes") {
                    REQUIRE(moved);
                    CHECK(moved->to == CircuitState::closed);
                    CHECK(breaker.acquire(later).granted);
                }
            }
            AND_WHEN("the probe is refused by the adapter's own limit, never sent") {
                breaker.forgo(probe.generation);
                THEN("the circuit stays half-open and the probe is free for the next call") {
                    CHECK(breaker.state(later) == CircuitState::half_open);
                    CHECK(breaker.usable(later));
                    CHECK(breaker.acquire(later).granted);
                }
            }
            AND_WHEN("the probe fails") {
                auto moved = breaker.record(probe.generation, true, later);
                THEN("the circuit opens for another open time") {
                    REQUIRE(moved);
                    CHECK(moved->to == CircuitState::open);
                    CHECK_FALSE(breaker.acquire(later + 29s).granted);
                    CHECK(breaker.acquire(later + 30s).granted);
                }
            }
        }
    }
}

SCENARIO("an answer to a call let through under an earlier state is not counted") {
    GIVEN("a call granted while closed, still out when the circuit opens") {
        CircuitBreaker breaker(small);
        auto old = breaker.acquire(t0());
        for (int i = 0; i < 4; ++i) call(breaker, true);
        REQUIRE(breaker.state(t0()) == CircuitState::open);
        auto probe = breaker.acquire(t0() + 30s);
        REQUIRE(probe.granted);
        WHEN("its success arrives during the half-open probe") {
            THEN("it does not close the circuit: only the probe decides") {
                CHECK_FALSE(breaker.record(old.generation, false, t0() + 31s));
                CHECK(breaker.state(t0() + 31s) == CircuitState::half_open);
            }
        }
    }
}

TEST_CASE("the breaker counts the provider's failures, not the card's") {
    CHECK(is_provider_failure(ChargeAnswer::failed(FailureKind::transient, "503")));
    CHECK(is_provider_failure(ChargeAnswer::failed(FailureKind::unknown_outcome, "timeout")));
    CHECK_FALSE(is_provider_failure(ChargeAnswer::failed(FailureKind::declined, "card declined")));
    CHECK_FALSE(is_provider_failure(ChargeAnswer::success("ch_1", usd(100))));
    CHECK_FALSE(is_provider_failure(ChargeAnswer::failed_at_card(FailureKind::transient, "issuer unavailable")));
    CHECK_FALSE(is_provider_failure(ChargeAnswer::refused_over_limit("too many calls in flight; not sent")));
}

TEST_CASE("breaker options are checked") {
    CHECK(BreakerOptions{}.validate());
    CHECK_FALSE(BreakerOptions{.window = 5, .minimum_calls = 6}.validate());
    CHECK_FALSE(BreakerOptions{.window = 0, .minimum_calls = 0}.validate());
    CHECK_FALSE(BreakerOptions{.failure_ratio = 0.0}.validate());
    CHECK_FALSE(BreakerOptions{.failure_ratio = 1.5}.validate());
    CHECK_FALSE(BreakerOptions{.open_for = 0s}.validate());
    CHECK_FALSE(BreakerOptions{.half_open_probes = 0}.validate());
}
