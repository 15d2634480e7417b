#include <payments/infrastructure/bus/asio_scheduler.hpp>

#include "timer_queue.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <optional>

namespace payments::infrastructure {

using domain::Duration;
using domain::Timestamp;

struct AsioScheduler::Impl : std::enable_shared_from_this<Impl> {
    // The timer lives on a strand, and every wake-up (the timer's completion or
    // a post for a call already due) runs on it: due calls run one at a time,
    // in (time, order of scheduling) order, as the Scheduler port promises,
    // however many threads run the executor.
    Impl(boost::asio::any_io_executor executor, application::Clock const& c)
        : clock(c), timer(boost::asio::make_strand(std::move(executor))) {}

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
        // Nothing throws across the executor (it would end its thread): a call
        // that throws (a store that cannot read, application::StorageFailure)
        // is dropped, as the janitor's next round or a retry would redo it.
        for (auto& fn : due) {
            try {
                fn();
            } catch (std::exception const&) {
                ++failed_calls;
            }
        }
    }

    application::Clock const& clock;
    std::mutex mutex;
    TimerQueue queue;                     // Owned by: mutex
    boost::asio::steady_timer timer;      // Owned by: mutex
    std::optional<Timestamp> armed_for;   // Owned by: mutex
    std::uint64_t armed_generation = 0;   // Owned by: mutex
    bool stopped = false;                 // Owned by: mutex
    std::atomic<std::uint64_t> failed_calls{0};
};

AsioScheduler::AsioScheduler(boost::asio::any_io_executor executor, application::Clock const& clock)
    : impl_(std::make_shared<Impl>(std::move(executor), clock)) {}

AsioScheduler::~AsioScheduler() { shutdown(); }

application::TimerId AsioScheduler::call_at(Timestamp at, std::function<void()> fn) {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopped) return {at, 0};
    auto id = impl_->queue.add(at, std::move(fn));
    impl_->arm_locked();
    return id;
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

std::size_t AsioScheduler::pending() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->queue.size();
}

} // namespace payments::infrastructure
