#include "support/builders.hpp"

#include <payments/infrastructure/system/seeded_random.hpp>

using namespace test;

TEST_CASE("backoff grows exponentially from the failed attempt and stops at the cap") {
    RetryPolicy const policy; // base 1 s, x2, cap 30 s, 5 attempts
    CHECK(policy.max_delay(1) == 2s);
    CHECK(policy.max_delay(2) == 4s);
    CHECK(policy.max_delay(4) == 16s);
    CHECK(policy.max_delay(5) == 30s);
    CHECK(policy.max_delay(1000) == 30s);
}

TEST_CASE("full jitter draws from zero to the bound, both ends included") {
    RetryPolicy const policy;
    ScriptedRandom lowest({0});
    CHECK(policy.delay(3, lowest) == 0s);
    ScriptedRandom highest({UINT64_MAX});
    CHECK(policy.delay(3, highest) == policy.max_delay(3));

    infrastructure::SeededRandom random(3);
    Duration smallest = policy.max_delay(2), largest{0};
    for (int i = 0; i < 2000; ++i) {
        Duration d = policy.delay(2, random);
        REQUIRE(d >= 0s);
        REQUIRE(d <= policy.max_delay(2));
        smallest = std::min(smallest, d);
        largest = std::max(largest, d);
    }
    // Spread over the whole range, not stuck at one end.
    CHECK(smallest < 400ms);
    CHECK(largest > 3600ms);
}

TEST_CASE("nonsensical retry policies are refused") {
    CHECK(RetryPolicy{}.validate());
    CHECK(RetryPolicy{.base = -1s}.validate().error().code == ErrorCode::invalid_argument);
    CHECK(RetryPolicy{.multiplier = 0.5}.validate().error().code == ErrorCode::invalid_argument);
    CHECK(RetryPolicy{.base = 10s, .cap = 1s}.validate().error().code == ErrorCode::invalid_argument);
    CHECK(RetryPolicy{.max_attempts = 0}.validate().error().code == ErrorCode::invalid_argument);
    CHECK(RetryPolicy{.max_attempts = 101}.validate().error().code == ErrorCode::invalid_argument);
    CHECK_FALSE(RetryPolicy::retryable(FailureKind::declined));
    CHECK(RetryPolicy::retryable(FailureKind::transient));
    CHECK(RetryPolicy::retryable(FailureKind::unknown_outcome));
}

SCENARIO("finding 8: no policy that passes validate() yields a delay out of [0, cap]") {
    GIVEN("policies at the edges of what validate() accepts") {
        RetryPolicy const policies[] = {
            {.base = 0s, .multiplier = 1e300, .cap = RetryPolicy::max_cap},
            {.base = 1us, .multiplier = 1e300, .cap = RetryPolicy::max_cap},
            {.base = RetryPolicy::max_cap, .multiplier = 1.0, .cap = RetryPolicy::max_cap},
            {.base = 1s, .multiplier = 2.0, .cap = RetryPolicy::max_cap, .max_attempts = 100},
            {.base = 0s, .multiplier = 1.0, .cap = 0s},
        };
        for (RetryPolicy const& policy : policies) {
            REQUIRE(policy.validate());
            infrastructure::SeededRandom random(7);
            for (int n = 0; n <= 200; ++n) {
                CAPTURE(n);
                Duration const bound = policy.max_delay(n);
                CHECK(bound >= 0s);
                CHECK(bound <= policy.cap);
                Duration const drawn = policy.delay(n, random);
                CHECK(drawn >= 0s);
                CHECK(drawn <= bound);
            }
        }
    }
    THEN("a cap whose delays would overflow a timestamp is refused") {
        CHECK(RetryPolicy{.cap = Duration::max()}.validate().error().code == ErrorCode::invalid_argument);
        CHECK(RetryPolicy{.cap = RetryPolicy::max_cap + 1us}.validate().error().code == ErrorCode::invalid_argument);
    }
}
