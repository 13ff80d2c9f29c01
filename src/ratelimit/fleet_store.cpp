#include "okta_sidecar/ratelimit/fleet_store.hpp"

#include <algorithm>
#include <cmath>

namespace okta_sidecar::ratelimit {

namespace {

// A probe token opens an unknown window: it is meant for the request waiting for it, and dies
// soon if that request went away, so a stale probe cannot open a later window.
constexpr duration probe_token_ttl = std::chrono::seconds(1);
// How soon a request refused by the fleet-wide in-flight cap looks again: the others' slots
// free up without any event reaching this sidecar.
constexpr duration inflight_recheck = std::chrono::milliseconds(10);

std::int64_t ms_of(duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

double fleet_settings::share() const {
  if (fallback_share > 0.0 && fallback_share <= 1.0) return fallback_share;
  return 1.0 / static_cast<double>(std::max<std::uint32_t>(1, expected_replicas));
}

fleet_store::fleet_store(fleet_settings s) : settings_(s), local_(s.bucket), health_(s.health) {}

fleet_store::lease_state& fleet_store::at(const bucket_key& key) { return leases_[key]; }

std::uint32_t fleet_store::inflight_allowance(const std::string& host, time_point now) const {
  const std::uint32_t cap = std::max<std::uint32_t>(1, settings_.max_concurrency);
  const bool fresh = heartbeat_at_ && now - *heartbeat_at_ <= settings_.heartbeat_ttl;
  if (health_.mode() == fleet_mode::shared && fresh) {
    // The ledger reserves for every other live sidecar at least its fair share (or what it has
    // in flight, if more), so the sum of all allowances stays within the tenant's cap.
    const auto it = others_reserved_.find(host);
    const std::uint32_t others = it == others_reserved_.end() ? 0 : it->second;
    return others >= cap ? 1 : cap - others;
  }
  const auto share = static_cast<std::uint32_t>(std::floor(static_cast<double>(cap) * settings_.share()));
  return std::max<std::uint32_t>(1, share);
}

grant fleet_store::take(const bucket_key& key, double keep_fraction, time_point now) {
  lease_state& ls = at(key);
  if (health_.mode() == fleet_mode::shared && ls.outstanding) {
    // The answer is late: don't keep the request waiting for it (fleet_health decides).
    health_.check_outstanding(ls.sent, now);
    if (health_.mode() != fleet_mode::shared) drop_leases(now);
  }
  auto& inflight = host_inflight_[key.host];
  if (inflight >= inflight_allowance(key.host, now)) {
    ++counters_.inflight_denials;
    return grant{false, false, 0, now + inflight_recheck};
  }
  grant g = health_.mode() == fleet_mode::shared ? take_shared(key, ls, keep_fraction, now)
                                                 : take_local(key, ls, keep_fraction, now);
  if (g.granted) ++inflight;
  return g;
}

grant fleet_store::take_shared(const bucket_key& key, lease_state& ls, double keep_fraction, time_point now) {
  // Retry-After holds and unmetered buckets are facts this sidecar learned itself.
  const auto v = local_.view(key, now);
  if (v && v->hold_until) return grant{false, false, 0, v->hold_until};
  if (v && v->phase == bucket_phase::unmetered) return local_.take(key, keep_fraction, now);
  if (ls.tokens > 0 && now >= ls.expires) {
    counters_.tokens_expired += static_cast<std::uint64_t>(ls.tokens);
    ls.tokens = 0;
  }
  if (ls.tokens > 0) {
    // The interactive reserve: batch traffic leaves `kept` of the window unleased fleet-wide.
    const std::int64_t kept = bucket::kept(keep_fraction, ls.limit.value_or(0));
    if (kept > 0 && ls.left.value_or(0) + ls.tokens <= kept) return grant{false, false, 0, ls.reset_at};
    --ls.tokens;
    ls.last_take = now;
    ++counters_.lease_hits;
    if (ls.epoch >= 0) {
      if (ls.share_epoch != ls.epoch) {
        ls.share_epoch = ls.epoch;
        ls.local_used = 0;
      }
      ++ls.local_used;
    }
    // Ask for the next lease before this one runs out, but only while the window has plenty
    // left: near its end, tokens sitting here would be tokens the other sidecars lack.
    const auto plenty = static_cast<std::int64_t>(settings_.lease_size) * (replicas_ + 1);
    if (!ls.outstanding && 2 * ls.tokens < static_cast<std::int64_t>(settings_.lease_size) &&
        ls.left.value_or(0) >= plenty) {
      ls.want_more = true;
    }
    return grant{true, false, 0, std::nullopt};
  }
  if (ls.denied_until && now < *ls.denied_until) return grant{false, false, 0, ls.denied_until};
  ls.want_more = true;
  return grant{false, false, 0, now + settings_.lease_poll};
}

grant fleet_store::take_local(const bucket_key& key, lease_state& ls, double keep_fraction, time_point now) {
  grant g = local_.take(key, keep_fraction, now);
  if (!g.granted) return g;
  const auto v = local_.view(key, now);
  if (v && v->phase == bucket_phase::confirmed && v->reset_epoch) {
    if (ls.share_epoch != *v->reset_epoch) {
      ls.share_epoch = *v->reset_epoch;
      ls.local_used = 0;
    }
    // Without the ledger nobody knows what the other sidecars take: stay within our share of
    // the window (tokens leased earlier in the same window count too).
    const auto allowed = std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::floor(static_cast<double>(v->capacity) * settings_.share())));
    if (ls.local_used >= allowed) {
      local_.settle(key, g, settle_kind::not_processed, nullptr, now);
      ++counters_.share_denials;
      return grant{false, false, 0, v->reset_at};
    }
    ++ls.local_used;
  }
  ++counters_.local_admissions;
  return g;
}

void fleet_store::settle(const bucket_key& key, const grant& g, settle_kind kind, const observation* obs,
                         time_point now) {
  auto& inflight = host_inflight_[key.host];
  if (inflight > 0) --inflight;
  local_.settle(key, g, kind, obs, now);
  if (obs) note_report(at(key), *obs, kind == settle_kind::not_processed, now);
}

void fleet_store::forget(const bucket_key& key) {
  local_.forget(key);
  const auto it = leases_.find(key);
  if (it != leases_.end() && !it->second.outstanding) leases_.erase(it);
  if (const auto h = host_inflight_.find(key.host); h != host_inflight_.end() && h->second == 0) {
    host_inflight_.erase(h);
  }
}

void fleet_store::note_report(lease_state& ls, const observation& obs, bool rejected, time_point now) {
  if (obs.kind != limit_kind::window || !obs.remaining || !obs.reset_epoch) return;
  ledger_observation lo;
  lo.limit = std::max<std::int64_t>(0, obs.limit.value_or(0));
  lo.remaining = std::max<std::int64_t>(0, *obs.remaining);
  lo.reset_epoch = *obs.reset_epoch;
  lo.reset_in_ms =
      obs.reset_at ? std::max<std::int64_t>(0, ms_of(*obs.reset_at - now)) : ms_of(settings_.bucket.window);
  lo.rejected = rejected;

  const bool newer = !ls.reset_epoch || lo.reset_epoch > *ls.reset_epoch;
  if (newer) {
    // A new window: tokens of the old one are void, and a refusal for the old one is too.
    if (ls.tokens > 0 && ls.epoch >= 0 && ls.epoch < lo.reset_epoch) {
      counters_.tokens_expired += static_cast<std::uint64_t>(ls.tokens);
      ls.tokens = 0;
    }
    ls.denied_until.reset();
  }
  // Tell the ledger only what it may not know: a newer window, a 429, or more use of this
  // window than was leased (a neighbour outside the fleet spent some).
  const bool more_used = ls.limit && ls.reset_epoch && lo.reset_epoch == *ls.reset_epoch &&
                         lo.limit - lo.remaining > *ls.limit - ls.left.value_or(0);
  if (!(newer || rejected || more_used)) return;
  if (!ls.report || lo.reset_epoch > ls.report->reset_epoch) {
    ls.report = lo;
  } else if (lo.reset_epoch == ls.report->reset_epoch) {
    ls.report->remaining = std::min(ls.report->remaining, lo.remaining);
    ls.report->reset_in_ms = std::min(ls.report->reset_in_ms, lo.reset_in_ms);
    ls.report->rejected = ls.report->rejected || lo.rejected;
    ls.report->limit = std::max(ls.report->limit, lo.limit);
  }
}

std::optional<bucket_view> fleet_store::view(const bucket_key& key, time_point now) const {
  auto v = local_.view(key, now);
  if (health_.mode() != fleet_mode::shared) return v;
  const auto it = leases_.find(key);
  if (it == leases_.end() || !it->second.limit) return v;
  const lease_state& ls = it->second;
  if (v && v->phase == bucket_phase::unmetered) return v;
  bucket_view out = v.value_or(bucket_view{});
  if (!v) out.window = settings_.bucket.window;  // else the length the local bucket learned
  out.limit = ls.limit;
  out.reset_epoch = ls.reset_epoch;
  const std::int64_t tokens = ls.tokens > 0 && now < ls.expires ? ls.tokens : 0;
  out.capacity = std::max<std::int64_t>(0, *ls.limit);
  if (ls.reset_at && now < *ls.reset_at) {
    out.phase = bucket_phase::confirmed;
    out.reset_at = ls.reset_at;
    out.available = tokens + std::max<std::int64_t>(0, ls.left.value_or(0));
    out.remaining = out.available;
  } else {
    out.phase = bucket_phase::opening;
    out.reset_at.reset();
    out.available = out.capacity;
  }
  out.at_most = out.available;  // leased tokens are spent when taken: no answer can return one
  return out;
}

std::vector<lease_request> fleet_store::outgoing(time_point now) {
  std::vector<lease_request> out;
  if (health_.mode() != fleet_mode::shared) return out;  // reports wait for the rejoin
  for (auto& [key, ls] : leases_) {
    if (ls.outstanding) continue;
    const bool ask = ls.want_more && !(ls.denied_until && now < *ls.denied_until);
    const bool give_back = !ask && idle_tokens(ls, now);
    if (!ask && !ls.report && !give_back) continue;
    lease_request r;
    r.id = next_id_++;
    r.key = key;
    r.want = ask ? settings_.lease_size : 0;
    r.obs = ls.report;
    if (give_back) {
      // Nothing here wanted them for a while: another sidecar may have requests waiting.
      r.give_back = ls.tokens;
      r.give_back_reset = ls.epoch;
      counters_.tokens_returned += static_cast<std::uint64_t>(ls.tokens);
      ls.tokens = 0;
    }
    if (r.obs) ++counters_.observations_sent;
    if (ask) ++counters_.lease_requests;
    ls.report.reset();
    ls.want_more = false;
    ls.asked = ask;
    ls.outstanding = r.id;
    ls.sent = now;
    outstanding_.emplace(r.id, key);
    out.push_back(std::move(r));
  }
  return out;
}

bool fleet_store::has_outgoing() const {
  if (health_.mode() != fleet_mode::shared) return false;
  return std::any_of(leases_.begin(), leases_.end(), [](const auto& kv) {
    return !kv.second.outstanding && (kv.second.want_more || kv.second.report);
  });
}

void fleet_store::on_lease(std::uint64_t id, const lease_reply& r, time_point now) {
  const auto it = outstanding_.find(id);
  if (it == outstanding_.end()) return;  // dropped when the sidecar fell back
  lease_state& ls = at(it->second);
  outstanding_.erase(it);
  if (ls.outstanding != id) return;
  ls.outstanding.reset();
  const bool asked = ls.asked;
  ls.asked = false;
  if (health_.mode() != fleet_mode::shared) return;
  if (r.limit >= 0) ls.limit = r.limit;
  ls.left = std::max<std::int64_t>(0, r.left);
  if (r.reset_epoch >= 0) ls.reset_epoch = r.reset_epoch;
  if (r.reset_in_ms >= 0) ls.reset_at = now + std::chrono::milliseconds(r.reset_in_ms);
  if (r.granted > 0) {
    ++counters_.lease_grants;
    const std::int64_t epoch = r.probe ? -1 : r.reset_epoch;
    if (ls.tokens > 0 && ls.epoch != epoch) {
      counters_.tokens_expired += static_cast<std::uint64_t>(ls.tokens);
      ls.tokens = 0;
    }
    ls.tokens += r.granted;
    ls.last_take = now;  // granted for a request waiting now: not idle yet
    ls.epoch = epoch;
    ls.probe = r.probe;
    ls.expires = r.probe || !ls.reset_at ? now + probe_token_ttl : *ls.reset_at;
    ls.denied_until.reset();
  } else if (asked) {
    // A report-only answer says nothing about whether tokens are left for us.
    ++counters_.lease_denials;
    ls.denied_until =
        now + std::max<duration>(settings_.lease_poll, std::chrono::milliseconds(r.retry_in_ms));
  }
}

void fleet_store::on_lease_failed(std::uint64_t id, time_point) {
  const auto it = outstanding_.find(id);
  if (it == outstanding_.end()) return;
  lease_state& ls = at(it->second);
  outstanding_.erase(it);
  if (ls.outstanding == id) ls.outstanding.reset();
}

heartbeat_request fleet_store::heartbeat() const {
  heartbeat_request r;
  for (const auto& [host, n] : host_inflight_) {
    r.inflight.emplace_back(host, n);
    const auto it = learned_out_.find(host);
    r.learned.push_back(it == learned_out_.end() ? std::nullopt : std::optional(it->second));
  }
  return r;
}

void fleet_store::heartbeat_sent(const heartbeat_request& r) {
  for (std::size_t i = 0; i < r.inflight.size() && i < r.learned.size(); ++i) {
    const auto it = learned_out_.find(r.inflight[i].first);
    if (r.learned[i] && it != learned_out_.end() && it->second.cap == r.learned[i]->cap &&
        it->second.refused == r.learned[i]->refused) {
      learned_out_.erase(it);
    }
  }
}

void fleet_store::share_concurrency(const std::string& host, const concurrency_memory& learned) {
  host_inflight_.try_emplace(host, 0);  // so the next heartbeat names the host
  learned_out_[host] = learned;
}

std::optional<bucket_store::shared_concurrency> fleet_store::fleet_concurrency(
    const std::string& host) const {
  if (health_.mode() != fleet_mode::shared) return std::nullopt;
  const auto it = learned_in_.find(host);
  if (it == learned_in_.end() || it->second.version == 0) return std::nullopt;
  return it->second;
}

void fleet_store::on_heartbeat(const heartbeat_reply& r, time_point now) {
  replicas_ = std::max<std::uint32_t>(1, r.replicas);
  others_reserved_.clear();
  for (const auto& [host, n] : r.others_reserved) others_reserved_.emplace(host, n);
  for (const auto& [host, c] : r.concurrency) learned_in_[host] = c;
  heartbeat_at_ = now;
}

void fleet_store::on_redis_answer(duration latency, time_point now) {
  const auto before = health_.mode();
  health_.on_answer(latency, now);
  if (before == fleet_mode::shared && health_.mode() != fleet_mode::shared) drop_leases(now);
}

void fleet_store::on_redis_failure(fallback_reason why, time_point now) {
  const auto before = health_.mode();
  health_.on_failure(why, now);
  if (before == fleet_mode::shared && health_.mode() != fleet_mode::shared) drop_leases(now);
}

void fleet_store::tick(time_point now) {
  if (health_.mode() != fleet_mode::shared) return;
  for (const auto& [key, ls] : leases_) {
    if (ls.outstanding) health_.check_outstanding(ls.sent, now);
  }
  if (health_.mode() != fleet_mode::shared) drop_leases(now);
}

bool fleet_store::idle_tokens(const lease_state& ls, time_point now) const {
  return ls.tokens > 0 && ls.epoch >= 0 && !ls.probe && now < ls.expires &&
         now - ls.last_take >= settings_.lease_idle_return;
}

std::optional<time_point> fleet_store::next_deadline() const {
  std::optional<time_point> out;
  for (const auto& [key, ls] : leases_) {
    if (!ls.outstanding && ls.tokens > 0 && ls.epoch >= 0 && !ls.probe) {
      // When unused tokens fall due to be handed back.
      const time_point t = ls.last_take + settings_.lease_idle_return;
      if (t < ls.expires && (!out || t < *out)) out = t;
    }
    if (!ls.outstanding) continue;
    const time_point t = ls.sent + settings_.health.timeout + std::chrono::milliseconds(1);
    if (!out || t < *out) out = t;
  }
  return out;
}

void fleet_store::drop_leases(time_point) {
  // Leased tokens stay counted in the ledger (conservative); here they simply die. What this
  // sidecar already took in the window still counts against its local share.
  for (auto& [key, ls] : leases_) {
    counters_.tokens_expired += static_cast<std::uint64_t>(std::max<std::int64_t>(0, ls.tokens));
    ls.tokens = 0;
    ls.outstanding.reset();
    ls.denied_until.reset();
    ls.want_more = false;
  }
  outstanding_.clear();
  heartbeat_at_.reset();
}

std::vector<fleet_bucket_info> fleet_store::buckets(time_point now) const {
  std::vector<fleet_bucket_info> out;
  for (const auto& [key, ls] : leases_) {
    fleet_bucket_info i;
    i.key = key;
    i.tokens = ls.tokens > 0 && now < ls.expires ? ls.tokens : 0;
    i.shared_limit = ls.limit;
    i.shared_left = ls.left;
    i.shared_reset_epoch = ls.reset_epoch;
    if (i.tokens > 0) i.lease_expires_in = ls.expires - now;
    i.local_used = ls.local_used;
    out.push_back(std::move(i));
  }
  return out;
}

void fleet_store::update_settings(const fleet_settings& s) {
  settings_ = s;
  local_.update_settings(s.bucket);
  health_.update_settings(s.health);
}

}  // namespace okta_sidecar::ratelimit
