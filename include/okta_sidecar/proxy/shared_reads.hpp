#pragma once
// Reads that need not cost Okta a request each (issue 15): identical concurrent GET/HEAD
// requests share one upstream request (a "flight": the first is its leader, the others follow
// and get a copy of its response), and Okta's public documents are answered from
// cache::document_cache. The policy is pure (ratelimit::coalesce_key, cache::document_cache);
// this is the thread-safe shell: the flights' waiters and a mutex around the cache.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "okta_sidecar/cache/document_cache.hpp"
#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/net/parking.hpp"

namespace okta_sidecar::proxy {

namespace asio = boost::asio;

// A response as it is shared: end-to-end fields and the whole (decoded-framing) body.
using shared_response = cache::document;

class shared_reads {
 public:
  explicit shared_reads(cache::cache_settings s) : cache_(s) {}

  // ---- coalescing ----
  struct flight;
  struct joined {
    std::shared_ptr<flight> f;
    bool leader = false;
  };
  // Leader of a new flight, or follower of the one in the air for `key`.
  joined join(const std::string& key);
  // A follower waits for its leader's response (nullptr: the leader could not share one, or
  // `deadline` passed; go upstream alone).
  asio::awaitable<std::shared_ptr<const shared_response>> follow(std::shared_ptr<flight> f,
                                                                 time_point deadline);
  bool has_followers(const flight& f) const;
  // The leader's end: hands `r` (or nullptr) to every follower and lands the flight.
  void finish(const std::shared_ptr<flight>& f, std::shared_ptr<const shared_response> r);

  // ---- cache ----
  struct cached {
    shared_response doc;
    duration age{};
  };
  std::optional<cached> fresh(const std::string& key, time_point now);
  std::optional<cached> stale_for_error(const std::string& key, time_point now);
  void store(const std::string& key, const shared_response& r, const cache::cache_control& cc,
             time_point now);
  void update_settings(const cache::cache_settings& s);

  struct stats {
    std::uint64_t coalesced = 0;  // followers answered with their leader's response
    std::uint64_t flights = 0;    // leaders
    cache::cache_counters cache;
    std::size_t cache_entries = 0, cache_bytes = 0;
  };
  stats snapshot() const;

 private:
  // A follower's parking spot, woken with its leader's response (nullptr: none to share).
  using waiter = net::parking_spot<std::shared_ptr<const shared_response>>;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<flight>> flights_;
  std::uint64_t coalesced_ = 0, flights_total_ = 0;
  cache::document_cache cache_;
};

}  // namespace okta_sidecar::proxy
