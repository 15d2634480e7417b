#pragma once

#include <payments/domain/time.hpp>

namespace payments::application {

/// Where "now" comes from: the system clock in production, a manual clock in tests.
class Clock {
public:
    virtual ~Clock() = default;
    virtual domain::Timestamp now() const = 0;
};

} // namespace payments::application
