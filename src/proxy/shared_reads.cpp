#include "okta_sidecar/proxy/shared_reads.hpp"

#include <boost/asio/this_coro.hpp>

namespace okta_sidecar::proxy {

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
  auto w = waiter::make(ex);
  {
    std::lock_guard lock(mu_);
    if (f->landed) co_return nullptr;  // landed between join() and now: go alone
    f->waiters.push_back(w);
  }
  auto r = co_await w->wait(deadline);  // nullopt: the deadline passed or the client went away
  co_return r.value_or(nullptr);
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
  for (auto& w : ws) w->wake(r);
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
