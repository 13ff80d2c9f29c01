#include "okta_sidecar/proxy/shared_reads.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace okta_sidecar::proxy {

// One follower's parking spot; `done`/`res` are written by a handler posted to its own executor.
struct shared_reads::waiter {
  explicit waiter(asio::any_io_executor ex) : timer(std::move(ex), time_point::max()) {}
  asio::steady_timer timer;
  bool done = false;
  std::shared_ptr<const shared_response> res;
};

struct shared_reads::flight {
  std::string key;
  std::vector<std::shared_ptr<waiter>> waiters;  // under shared_reads::mu_
  bool landed = false;
};

shared_reads::joined shared_reads::join(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = flights_.find(key);
  if (it != flights_.end()) return {it->second, false};
  auto f = std::make_shared<flight>();
  f->key = key;
  flights_.emplace(key, f);
  ++flights_total_;
  return {std::move(f), true};
}

asio::awaitable<std::shared_ptr<const shared_response>> shared_reads::follow(std::shared_ptr<flight> f,
                                                                             time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto w = std::make_shared<waiter>(ex);
  {
    std::lock_guard lock(mu_);
    if (f->landed) co_return nullptr;  // landed between join() and now: go alone
    f->waiters.push_back(w);
  }
  w->timer.expires_at(deadline);
  while (!w->done) {
    auto [ec] = co_await w->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (w->done) break;
    if (!ec) co_return nullptr;  // deadline
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) co_return nullptr;
  }
  co_return w->res;
}

bool shared_reads::has_followers(const flight& f) const {
  std::lock_guard lock(mu_);
  return !f.waiters.empty();
}

void shared_reads::finish(const std::shared_ptr<flight>& f, std::shared_ptr<const shared_response> r) {
  std::vector<std::shared_ptr<waiter>> ws;
  {
    std::lock_guard lock(mu_);
    if (f->landed) return;
    f->landed = true;
    auto it = flights_.find(f->key);
    if (it != flights_.end() && it->second == f) flights_.erase(it);
    ws.swap(f->waiters);
    if (r) coalesced_ += ws.size();
  }
  for (auto& w : ws) {
    asio::post(w->timer.get_executor(), [w, r] {
      w->done = true;
      w->res = r;
      w->timer.cancel();
    });
  }
}

std::optional<shared_reads::cached> shared_reads::fresh(const std::string& key, time_point now) {
  std::lock_guard lock(mu_);
  const auto r = cache_.lookup(key, now);
  if (r.kind != cache::lookup_kind::fresh) return std::nullopt;
  return cached{*r.doc, r.age};
}

std::optional<shared_reads::cached> shared_reads::stale_for_error(const std::string& key, time_point now) {
  std::lock_guard lock(mu_);
  const auto r = cache_.stale_for_error(key, now);
  if (r.kind == cache::lookup_kind::miss) return std::nullopt;
  return cached{*r.doc, r.age};
}

void shared_reads::store(const std::string& key, const shared_response& r, const cache::cache_control& cc,
                         time_point now) {
  std::lock_guard lock(mu_);
  cache_.store(key, r, cc, now);
}

void shared_reads::update_settings(const cache::cache_settings& s) {
  std::lock_guard lock(mu_);
  cache_.update_settings(s);
}

shared_reads::stats shared_reads::snapshot() const {
  std::lock_guard lock(mu_);
  return stats{coalesced_, flights_total_, cache_.counters(), cache_.entries(), cache_.bytes()};
}

}  // namespace okta_sidecar::proxy
