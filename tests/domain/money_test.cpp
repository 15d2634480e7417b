#include "support/builders.hpp"

using namespace test;

TEST_CASE("currencies carry their ISO 4217 minor-unit exponent") {
    struct Row {
        char const* code;
        int exponent;
    };
    for (Row const row : {Row{"USD", 2}, Row{"EUR", 2}, Row{"JPY", 0}, Row{"KRW", 0}, Row{"BHD", 3}, Row{"KWD", 3},
                          Row{"CLF", 4}, Row{"XOF", 0}}) {
        CAPTURE(row.code);
        auto currency = Currency::from_code(row.code);
        REQUIRE(currency);
        CHECK(currency->code() == row.code);
        CHECK(currency->exponent() == row.exponent);
    }
}

TEST_CASE("unknown or malformed currency codes are refused") {
    for (char const* code : {"", "US", "USDD", "usd", "XYZ", "XAU", "ZZZ", "AAA"}) {
        CAPTURE(code);
        auto currency = Currency::from_code(code);
        REQUIRE_FALSE(currency);
        CHECK(currency.error().code == ErrorCode::unknown_currency);
    }
}

TEST_CASE("a charge must be a positive amount within range") {
    CHECK(Money::positive(1, Currency::usd()));
    CHECK(Money::positive(Money::max_minor_units, Currency::usd()));
    for (std::int64_t bad : {std::int64_t{0}, std::int64_t{-1}, Money::max_minor_units + 1, INT64_MAX, INT64_MIN}) {
        CAPTURE(bad);
        auto money = Money::positive(bad, Currency::usd());
        REQUIRE_FALSE(money);
        CHECK(money.error().code == ErrorCode::invalid_amount);
    }
    CHECK(Money::of(-5, Currency::usd()));
    CHECK(Money::of(0, Currency::usd()));
}

TEST_CASE("adding money checks currency and overflow") {
    auto const eur = Currency::from_code("EUR").value();
    CHECK(usd(150).plus(usd(250)).value() == usd(400));
    CHECK(usd(1).plus(Money::of(1, eur).value()).error().code == ErrorCode::currency_mismatch);
    CHECK(usd(Money::max_minor_units).plus(usd(1)).error().code == ErrorCode::overflow);
}

TEST_CASE("money prints with its currency's exponent, in integers only") {
    auto const jpy = Currency::from_code("JPY").value();
    auto const bhd = Currency::from_code("BHD").value();
    CHECK(usd(1050).to_string() == "10.50 USD");
    CHECK(usd(5).to_string() == "0.05 USD");
    CHECK(Money::of(1050, jpy).value().to_string() == "1050 JPY");
    CHECK(Money::of(-5, bhd).value().to_string() == "-0.005 BHD");
    CHECK(Money::of(Money::max_minor_units, Currency::usd()).value().to_string() == "9999999999999.99 USD");
}
