#include "okta_sidecar/cache/document_cache.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace okta_sidecar::cache {

namespace {

constexpr int ok_status = 200;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// delta-seconds (RFC 9111 §1.2.2): digits only; too large saturates.
std::optional<std::int64_t> delta_seconds(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty() || !std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return std::nullopt;
  }
  std::int64_t out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec == std::errc::result_out_of_range) return std::int64_t{2147483648};  // RFC 9111 §1.2.2
  if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
  return out;
}

// Splits on commas outside quoted strings.
std::vector<std::string_view> split_list(std::string_view v) {
  std::vector<std::string_view> out;
  bool quoted = false;
  std::size_t from = 0;
  for (std::size_t i = 0; i <= v.size(); ++i) {
    if (i < v.size() && v[i] == '"') quoted = !quoted;
    if (i == v.size() || (v[i] == ',' && !quoted)) {
      auto item = trim(v.substr(from, i - from));
      if (!item.empty()) out.push_back(item);
      from = i + 1;
    }
  }
  return out;
}

}  // namespace

cache_control parse_cache_control(const std::vector<std::string_view>& values) {
  cache_control cc;
  for (const auto value : values) {
    for (const auto item : split_list(value)) {
      const auto eq = item.find('=');
      const auto name = trim(item.substr(0, eq));
      const auto arg = eq == std::string_view::npos ? std::string_view{} : trim(item.substr(eq + 1));
      if (iequals(name, "max-age")) {
        // An invalid or repeated max-age: treat the response as stale (RFC 9111 §4.2.1).
        const auto v = delta_seconds(arg);
        cc.max_age = v && !cc.max_age ? *v : 0;
      } else if (iequals(name, "s-maxage")) {
        cc.s_maxage = delta_seconds(arg).value_or(0);
      } else if (iequals(name, "no-store")) {
        cc.no_store = true;
      } else if (iequals(name, "no-cache")) {
        cc.no_cache = true;
      } else if (iequals(name, "must-revalidate") || iequals(name, "proxy-revalidate")) {
        cc.must_revalidate = true;
      } else if (iequals(name, "private")) {
        cc.is_private = true;
      }
    }
  }
  return cc;
}

bool is_public_document(std::string_view path) {
  // Every request asks; all but a few are API calls, told apart here before the path is scanned.
  if (!path.starts_with("/oauth2/") && !path.starts_with("/.well-known/")) return false;
  if (const auto q = path.find_first_of("?#"); q != std::string_view::npos) path = path.substr(0, q);
  if (path == "/oauth2/v1/keys") return true;
  if (path.starts_with("/.well-known/") && path.size() > 13) return true;
  // /oauth2/{id}/v1/keys and /oauth2/{id}/.well-known/*: one non-empty segment for the id.
  constexpr std::string_view prefix = "/oauth2/";
  if (!path.starts_with(prefix)) return false;
  const auto rest = path.substr(prefix.size());
  const auto slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos) return false;
  const auto tail = rest.substr(slash);
  if (tail == "/v1/keys") return true;
  return tail.starts_with("/.well-known/") && tail.size() > 13;
}

document_cache::document_cache(cache_settings s) : settings_(s) {}

lookup_result document_cache::lookup(const std::string& key, time_point now) {
  if (!settings_.enabled) return {};
  auto it = map_.find(key);
  if (it == map_.end()) {
    ++counters_.misses;
    return {};
  }
  auto& e = *it->second;
  const duration age = now - e.stored;
  if (age >= e.max_age) return {lookup_kind::stale, &e.doc, age};
  lru_.splice(lru_.begin(), lru_, it->second);
  ++counters_.hits;
  return {lookup_kind::fresh, &e.doc, age};
}

lookup_result document_cache::stale_for_error(const std::string& key, time_point now) {
  if (!settings_.enabled) return {};
  auto it = map_.find(key);
  if (it == map_.end()) return {};
  auto& e = *it->second;
  const duration age = now - e.stored;
  if (age >= e.max_age + settings_.stale_if_error) {
    erase(it);  // too old to be of use, even now
    return {};
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  ++counters_.stale_served;
  return {age < e.max_age ? lookup_kind::fresh : lookup_kind::stale, &e.doc, age};
}

bool document_cache::store(const std::string& key, document doc, const cache_control& cc, time_point now) {
  if (!settings_.enabled) return false;
  auto old = map_.find(key);
  if (cc.no_store || cc.is_private || doc.status != ok_status) {
    // no-store also forbids keeping an earlier copy (RFC 9111 §5.2.2.5).
    if (old != map_.end() && (cc.no_store || cc.is_private)) erase(old);
    return false;
  }
  // Without an explicit lifetime nothing is stored: heuristic freshness (RFC 9111 §4.2.2) would
  // guess at how long signing keys stay valid. no-cache: stored, but stale from the start, so
  // only the stale-if-error rule can ever serve it.
  const std::optional<std::int64_t> life = cc.s_maxage ? cc.s_maxage : cc.max_age;
  if (!life) return false;
  duration max_age = cc.no_cache ? duration::zero() : std::chrono::seconds(*life);
  // The upstream's own Age (RFC 9111 §4.2.3) counts against the lifetime.
  duration initial_age{};
  for (auto f = doc.fields.begin(); f != doc.fields.end();) {
    if (iequals(f->first, "Age")) {
      if (const auto a = delta_seconds(trim(f->second))) initial_age = std::chrono::seconds(*a);
      f = doc.fields.erase(f);
    } else {
      ++f;
    }
  }
  std::size_t size = key.size() + doc.body.size();
  for (const auto& [n, v] : doc.fields) size += n.size() + v.size() + 4;
  if (size > settings_.max_entry_bytes || size > settings_.max_bytes || settings_.max_entries == 0) {
    if (old != map_.end()) erase(old);
    return false;
  }
  if (old != map_.end()) erase(old);
  lru_.push_front(entry{key, std::move(doc), now - initial_age, max_age, size});
  map_.emplace(key, lru_.begin());
  bytes_ += size;
  ++counters_.stores;
  evict_to_fit();
  return map_.count(key) > 0;
}

void document_cache::update_settings(const cache_settings& s) {
  settings_ = s;
  if (!settings_.enabled) {
    lru_.clear();
    map_.clear();
    bytes_ = 0;
    return;
  }
  evict_to_fit();
}

void document_cache::erase(std::unordered_map<std::string, std::list<entry>::iterator>::iterator it) {
  bytes_ -= it->second->size;
  lru_.erase(it->second);
  map_.erase(it);
}

void document_cache::evict_to_fit() {
  while (!lru_.empty() && (map_.size() > settings_.max_entries || bytes_ > settings_.max_bytes)) {
    erase(map_.find(lru_.back().key));
    ++counters_.evictions;
  }
}

}  // namespace okta_sidecar::cache
