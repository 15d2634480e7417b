#include <payments/infrastructure/bus/asio_scheduler.hpp>

#include "timer_queue.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <string>
#include <optional>

namespace payments::infrastructure {

using domain::Duration;
using domain::Timestamp;

struct AsioScheduler::Impl : std::enable_shared_from_this<Impl> {
    // The timer lives on a strand, and every wake-up (the timer's completion or
    // a post for a call already due) runs on it: due calls run one at a time,
    // in (time, order of scheduling) order, as the Scheduler port promises,
    // however many threads run the executor.
    Impl(boost::asio::any_io_executor executor, application::Clock const& c, application::Logger* l)
        : clock(c), logger(l), pool(executor), timer(boost::asio::make_strand(pool)) {}

    // Arms the timer for the earliest call unless it is armed early enough already.
    void arm_locked() {
        auto const earliest = queue.earliest();
        if (!earliest || stopped || (armed_for && *armed_for <= *earliest)) return;
        armed_for = *earliest;
        std::uint64_t const generation = ++armed_generation;
        Duration const wait = *earliest - clock.now();
        // A call already due skips the timer (and its system calls): it is posted.
        if (wait <= Duration::zero()) {
            boost::asio::post(timer.get_executor(), [self = shared_from_this(), generation] { self->on_timer(generation); });
            return;
        }
        timer.expires_after(wait);
        timer.async_wait([self = shared_from_this(), generation](boost::system::error_code ec) {
            if (!ec) self->on_timer(generation);
        });
    }

    void on_timer(std::uint64_t generation) {
        std::vector<std::function<void()>> due;
        {
            std::lock_guard lock(mutex);
            // A newer arming replaced this wait; that one will do the work.
            if (generation != armed_generation) return;
            armed_for.reset();
            due = queue.take_due(clock.now());
            arm_locked();
        }
        for (auto& fn : due) run(fn);
    }

    // Nothing a call throws leaves the strand: it would end the thread that
    // runs the executor, and the calls due after it would never run.
    void run(std::function<void()>& fn) noexcept {
        std::string error;
        try {
            fn();
            return;
        } catch (std::exception const& e) {
            error = e.what();
        } catch (...) {
            error = "unknown exception";
        }
        failed.fetch_add(1, std::memory_order_relaxed);
        if (logger) logger->error("a scheduled call threw", {{"error", error}});
    }

    application::Clock const& clock;
    application::Logger* logger;          // null: failures are only counted
    std::atomic<std::uint64_t> failed{0};
    boost::asio::any_io_executor pool; // post()'s: the pool itself, not the timer's strand
    std::mutex mutex;
    TimerQueue queue;                     // Owned by: mutex
    boost::asio::steady_timer timer;      // Owned by: mutex
    std::optional<Timestamp> armed_for;   // Owned by: mutex
    std::uint64_t armed_generation = 0;   // Owned by: mutex
    bool stopped = false;                 // Owned by: mutex
};

AsioScheduler::AsioScheduler(boost::asio::any_io_executor executor, application::Clock const& clock,
                             application::Logger& logger)
    : impl_(std::make_shared<Impl>(std::move(executor), clock, &logger)) {}

AsioScheduler::AsioScheduler(boost::asio::any_io_executor executor, application::Clock const& clock)
    : impl_(std::make_shared<Impl>(std::move(executor), clock, nullptr)) {}

AsioScheduler::~AsioScheduler() { shutdown(); }

application::TimerId AsioScheduler::call_at(Timestamp at, std::function<void()> fn) {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopped) return {at, 0};
    auto id = impl_->queue.add(at, std::move(fn));
    impl_->arm_locked();
    return id;
}

void AsioScheduler::post(std::function<void()> fn) {
    boost::asio::post(impl_->pool, [impl = impl_, fn = std::move(fn)]() mutable { impl->run(fn); });
}

bool AsioScheduler::cancel(application::TimerId id) {
    std::lock_guard lock(impl_->mutex);
    // The timer may stay armed for a call that is gone; it then wakes, finds
    // nothing due and re-arms, which is cheaper than re-arming on every cancel.
    return impl_->queue.cancel(id);
}

std::size_t AsioScheduler::shutdown() {
    std::lock_guard lock(impl_->mutex);
    impl_->stopped = true;
    std::size_t const dropped = impl_->queue.size();
    impl_->queue.clear();
    impl_->timer.cancel();
    impl_->armed_for.reset();
    return dropped;
}

std::uint64_t AsioScheduler::failed_calls() const { return impl_->failed.load(std::memory_order_relaxed); }

std::size_t AsioScheduler::pending() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->queue.size();
}

} // namespace payments::infrastructure
