#include "support/builders.hpp"

#include <payments/infrastructure/seeded_random.hpp>

#include <unordered_set>

using namespace test;

TEST_CASE("caller-supplied ids are validated") {
    for (std::string const& good : std::vector<std::string>{"a", "inv_1", "A-z_9", std::string(64, 'x')}) {
        CAPTURE(good);
        CHECK(InvoiceId::parse(good));
    }
    for (std::string const& bad : std::vector<std::string>{"", std::string(65, 'x'), "a b", "inv/1", "inv\n", "caf\xc3\xa9", "a.b"}) {
        CAPTURE(bad);
        auto id = InvoiceId::parse(bad);
        REQUIRE_FALSE(id);
        CHECK(id.error().code == ErrorCode::invalid_argument);
    }
}

TEST_CASE("generated ids are prefixed, URL-safe, unique and reproducible from a seed") {
    infrastructure::SeededRandom random(7);
    std::unordered_set<std::string> seen;
    for (int i = 0; i < 10000; ++i) {
        auto id = InvoiceId::generate(random);
        REQUIRE(id.str().starts_with("inv_"));
        REQUIRE(id.str().size() == 30);
        REQUIRE(is_valid_id(id.str()));
        REQUIRE(seen.insert(id.str()).second);
    }
    CHECK(PaymentId::generate(random).str().starts_with("pay_"));
    infrastructure::SeededRandom a(99), b(99);
    CHECK(EventId::generate(a) == EventId::generate(b));
}
