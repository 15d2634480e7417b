// The durable stores' cache of committed aggregates: bounded, newest version
// wins, and a read from the file never puts back a version older than a commit.
#include "infrastructure/store/aggregate_cache.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>

namespace {

// An aggregate as the cache sees it: a value at a version.
struct Versioned {
    std::string value;
    std::uint64_t at = 0;
    std::uint64_t version() const { return at; }
};

using Cache = payments::infrastructure::AggregateCache<std::string, Versioned>;

} // namespace

SCENARIO("the aggregate cache keeps the newest committed version") {
    GIVEN("an aggregate committed at version 2") {
        Cache cache(8);
        cache.write_through("inv_1", {"second", 2});
        WHEN("an older commit writes through after it") {
            cache.write_through("inv_1", {"first", 1});
            THEN("version 2 stays") { CHECK(cache.find("inv_1")->value == "second"); }
        }
        WHEN("its commit conflicts") {
            cache.drop("inv_1");
            THEN("the next read goes to the file") { CHECK_FALSE(cache.find("inv_1")); }
        }
    }
}

SCENARIO("a read from the file does not overwrite what a commit wrote meanwhile") {
    GIVEN("a read that started before a commit of the same aggregate") {
        Cache cache(8);
        auto const since = cache.stamp();
        cache.write_through("inv_other", {"unrelated", 1}); // evicted or not, a commit happened
        WHEN("the read fills the cache with what it found") {
            cache.fill("inv_1", {"read before the commit", 1}, since);
            THEN("nothing is kept: the snapshot may be older than the commit") { CHECK_FALSE(cache.find("inv_1")); }
        }
    }
    GIVEN("a read with no commit during it") {
        Cache cache(8);
        auto const since = cache.stamp();
        WHEN("it fills the cache") {
            cache.fill("inv_1", {"read", 3}, since);
            THEN("the aggregate is kept") { CHECK(cache.find("inv_1")->value == "read"); }
        }
    }
}

SCENARIO("the aggregate cache holds at most its capacity, least recently used out first") {
    GIVEN("a cache of 2 holding inv_1 and inv_2, inv_1 read last") {
        Cache cache(2);
        cache.write_through("inv_1", {"one", 1});
        cache.write_through("inv_2", {"two", 1});
        CHECK(cache.find("inv_1"));
        WHEN("a third is committed") {
            cache.write_through("inv_3", {"three", 1});
            THEN("inv_2 left and the size stays 2") {
                CHECK(cache.size() == 2);
                CHECK_FALSE(cache.find("inv_2"));
                CHECK(cache.find("inv_1"));
                CHECK(cache.find("inv_3"));
            }
        }
    }
    GIVEN("a cache of capacity 0") {
        Cache cache(0);
        WHEN("an aggregate is committed") {
            cache.write_through("inv_1", {"one", 1});
            THEN("nothing is kept") { CHECK(cache.size() == 0); }
        }
    }
}
