#include <payments/infrastructure/observability/time_format.hpp>

#include <fmt/format.h>

#include <chrono>

namespace payments::infrastructure {

std::string format_rfc3339(domain::Timestamp at) {
    using namespace std::chrono;
    auto const day = floor<days>(at);
    year_month_day const date(day);
    hh_mm_ss const time(floor<milliseconds>(at - day));
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(date.year()),
                       static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()), time.hours().count(),
                       time.minutes().count(), time.seconds().count(), time.subseconds().count());
}

} // namespace payments::infrastructure
