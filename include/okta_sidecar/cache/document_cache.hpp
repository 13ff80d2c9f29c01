#pragma once
// The cache of Okta's public documents: signing keys (/oauth2/v1/keys, /oauth2/{id}/v1/keys) and
// discovery documents (/.well-known/*, /oauth2/{id}/.well-known/*). Nothing else is cached:
// every other answer depends on who asks, or changes with each call.
//
// Okta serves these with `Cache-Control: max-age=…, must-revalidate`. A fresh entry (age below
// max-age) is answered locally with an `Age` header (RFC 9111 §5.1). A stale one is never
// served while Okta answers (must-revalidate, RFC 9111 §5.2.2.2), except when Okta errs (5xx),
// times out, cannot be reached or its breaker is open: then the operator's
// cache.stale_if_error_s (RFC 5861's stale-if-error, set by configuration) keeps token
// verification alive. `no-store` and `private` are never stored. Bounded in entries and bytes
// (least recently used goes first). Pure: time comes in as arguments.
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "okta_sidecar/clock.hpp"

namespace okta_sidecar::cache {

struct cache_settings {
  bool enabled = true;
  duration stale_if_error = std::chrono::seconds(86400);
  std::size_t max_entries = 256;
  std::size_t max_bytes = 8 * 1024 * 1024;  // bodies + header fields
  std::size_t max_entry_bytes = 1024 * 1024;
};

// The Cache-Control directives we act on (RFC 9111 §5.2.2).
struct cache_control {
  std::optional<std::int64_t> max_age;  // seconds
  std::optional<std::int64_t> s_maxage;
  bool no_store = false;
  bool no_cache = false;
  bool must_revalidate = false;
  bool is_private = false;
};
// Parses every Cache-Control field value of a response (comma separated, case-insensitive
// names, quoted arguments); an invalid max-age makes the response uncacheable (max_age = 0).
cache_control parse_cache_control(const std::vector<std::string_view>& values);

// True for the public documents this cache may hold (path without the query).
bool is_public_document(std::string_view path);

struct document {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> fields;  // end-to-end header fields
  std::string body;
};

enum class lookup_kind { miss, fresh, stale };
struct lookup_result {
  lookup_kind kind = lookup_kind::miss;
  const document* doc = nullptr;  // valid until the next non-const call
  duration age{};
};

struct cache_counters {
  std::uint64_t hits = 0;          // fresh entries served
  std::uint64_t stale_served = 0;  // stale entries served while Okta could not answer
  std::uint64_t misses = 0;
  std::uint64_t stores = 0;
  std::uint64_t evictions = 0;
};

// LRU-bounded store of public Okta documents with HTTP freshness.
class document_cache {
 public:
  explicit document_cache(cache_settings s = {});

  // A normal request: `fresh` may be served, `stale` must go to Okta first.
  lookup_result lookup(const std::string& key, time_point now);
  // Okta could not answer: an entry within max-age + stale_if_error, if any.
  lookup_result stale_for_error(const std::string& key, time_point now);
  // A response from Okta. Stores 200s whose Cache-Control allows it; a `no-store` answer
  // also removes what was held. Returns true when stored.
  bool store(const std::string& key, document doc, const cache_control& cc, time_point now);

  void update_settings(const cache_settings& s);
  const cache_settings& settings() const { return settings_; }
  const cache_counters& counters() const { return counters_; }
  std::size_t entries() const { return map_.size(); }
  std::size_t bytes() const { return bytes_; }

 private:
  struct entry {
    std::string key;
    document doc;
    time_point stored{};
    duration max_age{};
    std::size_t size = 0;
  };
  void erase(std::unordered_map<std::string, std::list<entry>::iterator>::iterator it);
  void evict_to_fit();

  cache_settings settings_;
  std::list<entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<entry>::iterator> map_;
  std::size_t bytes_ = 0;
  cache_counters counters_;
};

}  // namespace okta_sidecar::cache
