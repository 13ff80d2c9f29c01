#include "okta_sidecar/fleet/fleet_service.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <cstdlib>
#include <random>
#include <stdexcept>

#include "okta_sidecar/fleet/ledger_scripts.hpp"

namespace okta_sidecar::fleet {

namespace {

using ratelimit::fallback_reason;
using ratelimit::fleet_mode;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::int64_t ms_of(duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }
double seconds_of(duration d) { return std::chrono::duration<double>(d).count(); }

std::string default_sidecar_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::random_device rd;
  char suffix[9];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(rd()));
  return std::string(host[0] ? host : "sidecar") + "-" + std::to_string(::getpid()) + "-" + suffix;
}

std::optional<std::int64_t> int_at(const redis_value& v, std::size_t i) {
  if (v.kind != redis_value::type::array || i >= v.elements.size()) return std::nullopt;
  const auto& e = v.elements[i];
  if (e.kind != redis_value::type::integer) return std::nullopt;
  return e.integer;
}

nlohmann::json opt(const std::optional<std::int64_t>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

}  // namespace

fleet_service_settings fleet_service_settings::from_config(const config::config& c) {
  if (!c.fleet) throw std::runtime_error("fleet: not configured");
  fleet_service_settings s;
  auto url = config::explain_redis_url(c.fleet->redis);
  if (!url) throw std::runtime_error("fleet.redis: " + url.error);
  s.url = *url.value;
  s.redacted_url = config::redact_redis_url(c.fleet->redis);
  // Kubernetes hands secrets over as environment variables: the password need not sit in a
  // ConfigMap with the rest of the file.
  if (s.url.password.value_or("").empty()) {
    if (const char* p = std::getenv("OKTA_SIDECAR_REDIS_PASSWORD"); p && *p) s.url.password = p;
  }
  s.key_prefix = c.fleet->key_prefix;
  s.store.lease_size = std::max<std::uint32_t>(1, c.fleet->lease_size);
  s.store.expected_replicas = std::max<std::uint32_t>(1, c.fleet->expected_replicas);
  s.store.fallback_share = c.fleet->fallback_share;
  s.store.max_concurrency = std::max<std::uint32_t>(1, c.rate_limit.max_concurrency);
  s.store.health.timeout = milliseconds(std::max<std::uint32_t>(1, c.fleet->timeout_ms));
  return s;
}

// What the service, its store handle and the metric callbacks share.
struct fleet_service::shared {
  mutable std::mutex mu;
  ratelimit::fleet_store core;
  std::function<void()> wake;  // cleared when the service goes away
  std::atomic<bool> wake_pending{false};
  explicit shared(const ratelimit::fleet_settings& s) : core(s) {}
};

namespace {

// The scheduler's view of the fleet: fleet_store behind the shared mutex. Called under the rate
// gate's mutex; the lock order is always gate -> fleet, and the service never takes the gate's.
class locked_store final : public ratelimit::bucket_store {
 public:
  explicit locked_store(std::shared_ptr<void> keep, std::mutex& mu, ratelimit::fleet_store& core,
                        std::function<void()>& wake)
      : keep_(std::move(keep)), mu_(mu), core_(core), wake_(wake) {}

  ratelimit::grant take(const ratelimit::bucket_key& key, double keep_fraction, time_point now) override {
    std::lock_guard lock(mu_);
    auto g = core_.take(key, keep_fraction, now);
    poke();
    return g;
  }
  void settle(const ratelimit::bucket_key& key, const ratelimit::grant& g, ratelimit::settle_kind kind,
              const ratelimit::observation* obs, time_point now) override {
    std::lock_guard lock(mu_);
    core_.settle(key, g, kind, obs, now);
    poke();
  }
  std::optional<ratelimit::bucket_view> view(const ratelimit::bucket_key& key,
                                             time_point now) const override {
    std::lock_guard lock(mu_);
    return core_.view(key, now);
  }
  void forget(const ratelimit::bucket_key& key) override {
    std::lock_guard lock(mu_);
    core_.forget(key);
  }
  void share_concurrency(const std::string& host, const ratelimit::concurrency_memory& learned) override {
    std::lock_guard lock(mu_);
    core_.share_concurrency(host, learned);
  }
  std::optional<shared_concurrency> fleet_concurrency(const std::string& host) const override {
    std::lock_guard lock(mu_);
    return core_.fleet_concurrency(host);
  }

 private:
  void poke() {
    if (wake_ && core_.has_outgoing()) wake_();
  }
  std::shared_ptr<void> keep_;
  std::mutex& mu_;
  ratelimit::fleet_store& core_;
  std::function<void()>& wake_;
};

}  // namespace

fleet_service::fleet_service(asio::io_context& ioc, fleet_service_settings s, const clock_source& clock,
                             const logging::log& log, metrics::registry& registry)
    : settings_(std::move(s)),
      clock_(clock),
      log_(log),
      shared_(std::make_shared<shared>(settings_.store)),
      strand_(asio::make_strand(ioc)),
      wake_timer_(strand_) {
  if (settings_.sidecar_id.empty()) settings_.sidecar_id = default_sidecar_id();
  if (settings_.url.tls) {
    tls_ctx_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    tls_ctx_->set_default_verify_paths();
    tls_ctx_->set_verify_mode(asio::ssl::verify_peer);
  }
  conn_ = std::make_unique<redis_connection>(strand_, tls_ctx_.get());
  shared_->wake = [this] { wake(); };

  auto sh = shared_;
  using samples = std::vector<metrics::registry::sample>;
  auto counter_of = [sh](auto field) {
    return [sh, field]() {
      std::lock_guard lock(sh->mu);
      return samples{{{}, static_cast<double>(field(sh->core))}};
    };
  };
  registry.add_callback_gauge(
      "okta_sidecar_fleet_mode", "Fleet mode: 1 budgets shared through Redis, 0 local fallback", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.mode() == fleet_mode::shared ? 1 : 0; }));
  registry.add_callback_gauge("okta_sidecar_fleet_replicas_seen",
                              "Live sidecars in the fleet (Redis heartbeats)", {},
                              counter_of([](const ratelimit::fleet_store& c) { return c.replicas_seen(); }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_lease_hits_total", "Admissions served from a leased token", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().lease_hits; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_lease_requests_total", "Lease requests sent to Redis", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().lease_requests; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_lease_grants_total", "Lease requests answered with tokens", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().lease_grants; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_lease_denials_total",
      "Lease requests answered with none (window spent, probe out elsewhere)", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().lease_denials; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_tokens_expired_total", "Leased tokens that died unused", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().tokens_expired; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_tokens_returned_total",
      "Leased tokens handed back unused before their window ended", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().tokens_returned; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_fallbacks_total", "Switches from shared to local mode", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.health().fallbacks(); }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_rejoins_total", "Switches from local to shared mode", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.health().rejoins(); }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_local_admissions_total", "Admissions decided in local mode", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().local_admissions; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_share_denials_total", "Local mode: requests held back by the conservative share",
      {}, counter_of([](const ratelimit::fleet_store& c) { return c.counters().share_denials; }));
  registry.add_callback_counter(
      "okta_sidecar_fleet_inflight_denials_total", "Requests held back by the fleet-wide in-flight cap", {},
      counter_of([](const ratelimit::fleet_store& c) { return c.counters().inflight_denials; }));
  latency_ = &registry
                  .add_histogram("okta_sidecar_fleet_redis_latency_seconds", "Redis pipeline round trips",
                                 metrics::latency_bounds_seconds())
                  .with(std::vector<std::string>{});
  redis_errors_ = &registry.add_counter("okta_sidecar_fleet_redis_errors_total",
                                        "Redis failures by kind (connect, io, timeout, reply)", {"kind"});
}

fleet_service::~fleet_service() {
  std::lock_guard lock(shared_->mu);
  shared_->wake = nullptr;
}

std::unique_ptr<ratelimit::bucket_store> fleet_service::make_store() {
  return std::make_unique<locked_store>(shared_, shared_->mu, shared_->core, shared_->wake);
}

void fleet_service::wake() {
  if (shared_->wake_pending.exchange(true)) return;
  asio::post(strand_, [this] {
    shared_->wake_pending = false;
    wake_timer_.cancel();
  });
}

void fleet_service::start() {
  log_.info(logging::event("fleet mode: sharing budgets through Redis")
                .with("redis", settings_.redacted_url)
                .with("sidecar_id", settings_.sidecar_id)
                .with("lease_size", settings_.store.lease_size)
                .with("local_share", settings_.store.share()));
  asio::co_spawn(strand_, run(), asio::detached);
}

void fleet_service::stop() {
  stopping_ = true;
  asio::post(strand_, [this] {
    wake_timer_.cancel();
    conn_->close();
  });
}

ratelimit::fleet_mode fleet_service::mode() const {
  std::lock_guard lock(shared_->mu);
  return shared_->core.mode();
}

asio::awaitable<boost::system::error_code> fleet_service::setup() {
  const auto now = clock_.now();
  auto ec = co_await conn_->connect(settings_.url, now + settings_.connect_timeout);
  if (ec) co_return ec;
  std::vector<std::string> cmds;
  if (const auto& pw = settings_.url.password; pw && !pw->empty()) {
    cmds.push_back(settings_.url.user.empty() ? format_command({"AUTH", *pw})
                                              : format_command({"AUTH", settings_.url.user, *pw}));
  }
  if (settings_.url.db != 0) cmds.push_back(format_command({"SELECT", std::to_string(settings_.url.db)}));
  cmds.push_back(format_command({"SCRIPT", "LOAD", lease_script}));
  cmds.push_back(format_command({"SCRIPT", "LOAD", heartbeat_script}));
  std::vector<redis_value> replies;
  ec = co_await conn_->exec(cmds, replies, clock_.now() + settings_.connect_timeout);
  if (ec) co_return ec;
  for (const auto& r : replies) {
    if (r.is_error()) {
      // AUTH or SELECT refused: the text (WRONGPASS, NOAUTH...) never holds the password.
      std::lock_guard lock(shared_->mu);
      last_error_ = r.str;
      conn_->close();
      co_return asio::error::access_denied;
    }
  }
  heartbeat_sha_ = replies.back().str;
  lease_sha_ = replies[replies.size() - 2].str;
  co_return boost::system::error_code{};
}

struct fleet_service::link_state {
  std::mt19937 rng{std::random_device{}()};
  duration backoff{};
  bool reported_down = false;
  time_point next_heartbeat{};
};

void fleet_service::log_transition() {
  if (!shared_->core.take_mode_changed()) return;
  const auto& h = shared_->core.health();
  if (h.mode() == fleet_mode::shared) {
    log_.info(logging::event("fleet: shared mode, budgets leased from Redis")
                  .with("redis", settings_.redacted_url)
                  .with("rejoins", h.rejoins()));
  } else {
    log_.warn(logging::event("fleet: Redis unusable, local mode with a conservative share")
                  .with("redis", settings_.redacted_url)
                  .with("reason", ratelimit::to_string(h.last_reason()))
                  .with("share", settings_.store.share())
                  .with("error", last_error_)
                  .with("fallbacks", h.fallbacks()));
  }
}

asio::awaitable<bool> fleet_service::reconnect(link_state& link) {
  connected_ = false;
  auto ec = co_await setup();
  if (stopping_) co_return false;
  if (ec) {
    redis_errors_->with({"connect"}).inc();
    {
      std::lock_guard lock(shared_->mu);
      if (ec != asio::error::access_denied) last_error_ = ec.message();
      shared_->core.on_redis_failure(fallback_reason::down, clock_.now());
      log_transition();
      if (!link.reported_down) {
        // Once per outage (transitions are logged above; this covers a Redis down at start).
        log_.warn(logging::event("fleet: cannot reach Redis, serving in local mode; retrying with backoff")
                      .with("redis", settings_.redacted_url)
                      .with("error", last_error_));
        link.reported_down = true;
      }
    }
    // Full jitter (as the retry policy does) so a fleet does not reconnect in lockstep.
    std::uniform_int_distribution<std::int64_t> d(ms_of(link.backoff) / 2, ms_of(link.backoff));
    wake_timer_.expires_after(milliseconds(d(link.rng)));
    co_await wake_timer_.async_wait(use_tuple);
    link.backoff = std::min(link.backoff * 2, settings_.backoff_max);
    co_return false;
  }
  link.backoff = settings_.backoff_min;
  link.reported_down = false;
  connected_ = true;
  link.next_heartbeat = clock_.now();
  co_return true;
}

void fleet_service::build_commands(const std::vector<ratelimit::lease_request>& reqs,
                                   const std::optional<ratelimit::heartbeat_request>& hb,
                                   std::vector<std::string>& cmds) const {
  cmds.clear();
  const std::string window_ms = std::to_string(ms_of(settings_.store.bucket.window));
  const std::string probe_ms = std::to_string(ms_of(settings_.probe_ttl));
  const std::string recheck_ms = std::to_string(ms_of(settings_.store.lease_recheck));
  for (const auto& r : reqs) {
    const std::string key = settings_.key_prefix + "bucket:" + r.key.host + ":" + r.key.bucket;
    const auto& o = r.obs;
    const std::string want = std::to_string(r.want);
    const std::string limit = o ? std::to_string(o->limit) : "0";
    const std::string remaining = o ? std::to_string(o->remaining) : "0";
    const std::string reset = o ? std::to_string(o->reset_epoch) : "0";
    const std::string reset_in = o ? std::to_string(o->reset_in_ms) : "0";
    const std::string give_back = std::to_string(r.give_back);
    const std::string give_back_reset = std::to_string(r.give_back_reset);
    cmds.push_back(format_command({"EVALSHA", lease_sha_, "1", key, want, o ? "1" : "0", limit, remaining,
                                   reset, reset_in, o && o->rejected ? "1" : "0", window_ms, probe_ms,
                                   give_back, give_back_reset, recheck_ms}));
  }
  if (!hb) return;
  std::vector<std::string> args{"EVALSHA", heartbeat_sha_, std::to_string(1 + 2 * hb->inflight.size()),
                                settings_.key_prefix + "members"};
  for (const auto& [host, n] : hb->inflight) args.push_back(settings_.key_prefix + "inflight:" + host);
  for (const auto& [host, n] : hb->inflight) args.push_back(settings_.key_prefix + "concurrency:" + host);
  args.push_back(settings_.sidecar_id);
  args.push_back(std::to_string(ms_of(settings_.store.heartbeat_ttl)));
  args.push_back(std::to_string(settings_.store.max_concurrency));
  for (const auto& [host, n] : hb->inflight) args.push_back(std::to_string(n));
  for (std::size_t i = 0; i < hb->inflight.size(); ++i) {
    const auto& l = i < hb->learned.size() ? hb->learned[i] : std::nullopt;
    args.push_back(std::to_string(l ? l->cap : 0));
    args.push_back(std::to_string(l && l->refused ? *l->refused : 0));
  }
  std::vector<std::string_view> views(args.begin(), args.end());
  cmds.push_back(format_command(std::span<const std::string_view>(views)));
}

bool fleet_service::apply_replies(const std::vector<ratelimit::lease_request>& reqs,
                                  const std::optional<ratelimit::heartbeat_request>& hb,
                                  const std::vector<redis_value>& replies, time_point done) {
  auto& core = shared_->core;
  bool reload = false;
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const auto& v = replies[i];
    const auto granted = int_at(v, 0);
    if (v.is_error() || !granted) {
      core.on_lease_failed(reqs[i].id, done);
      redis_errors_->with({"reply"}).inc();
      last_error_ = v.is_error() ? v.str : "unexpected lease reply";
      // After a Redis restart its script cache is empty: reconnecting loads them again.
      if (v.str.starts_with("NOSCRIPT")) {
        reload = true;
      } else {
        core.on_redis_failure(fallback_reason::error, done);
      }
      continue;
    }
    ratelimit::lease_reply lr;
    lr.granted = *granted;
    lr.probe = int_at(v, 1).value_or(0) != 0;
    lr.limit = int_at(v, 2).value_or(-1);
    lr.left = int_at(v, 3).value_or(0);
    lr.reset_epoch = int_at(v, 4).value_or(-1);
    lr.reset_in_ms = int_at(v, 5).value_or(-1);
    lr.retry_in_ms = int_at(v, 6).value_or(0);
    core.on_lease(reqs[i].id, lr, done);
  }
  if (!hb) return reload;
  const auto& v = replies.back();
  const auto n = int_at(v, 0);
  if (!n) {
    redis_errors_->with({"reply"}).inc();
    return reload || v.str.starts_with("NOSCRIPT");
  }
  ratelimit::heartbeat_reply hr;
  hr.replicas = static_cast<std::uint32_t>(std::max<std::int64_t>(1, *n));
  const std::size_t hosts = hb->inflight.size();
  for (std::size_t i = 0; i < hosts; ++i) {
    hr.others_reserved[hb->inflight[i].first] =
        static_cast<std::uint32_t>(std::max<std::int64_t>(0, int_at(v, i + 1).value_or(0)));
    const auto base = 1 + hosts + 3 * i;
    const auto version = int_at(v, base + 2).value_or(0);
    if (version > 0) {
      ratelimit::bucket_store::shared_concurrency sc;
      sc.memory.cap = static_cast<std::uint32_t>(std::max<std::int64_t>(0, int_at(v, base).value_or(0)));
      if (const auto refused = int_at(v, base + 1).value_or(0); refused > 0) {
        sc.memory.refused = static_cast<std::uint32_t>(refused);
      }
      sc.version = static_cast<std::uint64_t>(version);
      hr.concurrency[hb->inflight[i].first] = sc;
    }
  }
  core.heartbeat_sent(*hb);
  core.on_heartbeat(hr, done);
  return reload;
}

// One round at a time: connect if needed, take what the store wants to send (lease requests, a
// heartbeat when due), send it as one pipeline, hand the replies back.
asio::awaitable<void> fleet_service::run() {
  link_state link;
  link.backoff = settings_.backoff_min;
  link.next_heartbeat = clock_.now();
  std::vector<redis_value> replies;
  std::vector<std::string> cmds;
  while (!stopping_) {
    if (!conn_->is_open()) {
      const bool connected = co_await reconnect(link);
      if (!connected) continue;
    }

    const auto now = clock_.now();
    std::vector<ratelimit::lease_request> reqs;
    std::optional<ratelimit::heartbeat_request> hb;
    std::optional<time_point> deadline;
    {
      std::lock_guard lock(shared_->mu);
      shared_->core.tick(now);
      reqs = shared_->core.outgoing(now);
      if (now >= link.next_heartbeat) hb = shared_->core.heartbeat();
      deadline = shared_->core.next_deadline();
      log_transition();
    }
    if (reqs.empty() && !hb) {
      time_point until = link.next_heartbeat;
      if (deadline && *deadline < until) until = *deadline;
      wake_timer_.expires_at(until);
      co_await wake_timer_.async_wait(use_tuple);
      continue;
    }
    if (hb) link.next_heartbeat = now + settings_.heartbeat_interval;

    build_commands(reqs, hb, cmds);
    const auto sent = clock_.now();
    const auto ec = co_await conn_->exec(cmds, replies, sent + settings_.hard_timeout);
    const auto done = clock_.now();
    if (stopping_) break;
    std::lock_guard lock(shared_->mu);
    auto& core = shared_->core;
    if (ec) {
      const bool timeout = ec == beast::error::timeout;
      redis_errors_->with({timeout ? "timeout" : "io"}).inc();
      last_error_ = ec.message();
      for (const auto& r : reqs) core.on_lease_failed(r.id, done);
      core.on_redis_failure(timeout ? fallback_reason::slow : fallback_reason::down, done);
      conn_->close();
      log_transition();
      continue;
    }
    latency_->observe(seconds_of(done - sent));
    core.on_redis_answer(done - sent, done);
    if (apply_replies(reqs, hb, replies, done)) {
      core.on_redis_failure(fallback_reason::error, done);
      conn_->close();
    }
    log_transition();
  }
  connected_ = false;
}

nlohmann::json fleet_service::status() const {
  const auto now = clock_.now();
  std::lock_guard lock(shared_->mu);
  const auto& core = shared_->core;
  const auto& h = core.health();
  const auto& c = core.counters();
  nlohmann::json j;
  j["mode"] = ratelimit::to_string(h.mode());
  j["redis"] = settings_.redacted_url;
  j["connected"] = connected_.load();
  j["sidecar_id"] = settings_.sidecar_id;
  j["replicas_seen"] = core.replicas_seen();
  j["fallback_reason"] = ratelimit::to_string(h.last_reason());
  j["fallbacks"] = h.fallbacks();
  j["rejoins"] = h.rejoins();
  j["lease_size"] = settings_.store.lease_size;
  j["local_share"] = settings_.store.share();
  j["last_error"] = last_error_.empty() ? nlohmann::json() : nlohmann::json(last_error_);
  j["lease_hits"] = c.lease_hits;
  j["lease_requests"] = c.lease_requests;
  j["lease_grants"] = c.lease_grants;
  j["lease_denials"] = c.lease_denials;
  j["tokens_expired"] = c.tokens_expired;
  j["tokens_returned"] = c.tokens_returned;
  j["local_admissions"] = c.local_admissions;
  j["share_denials"] = c.share_denials;
  j["inflight_denials"] = c.inflight_denials;
  auto& hosts = j["hosts"] = nlohmann::json::array();
  for (const auto& [host, n] : core.heartbeat().inflight) {
    hosts.push_back({{"host", host}, {"inflight", n}, {"allowance", core.inflight_allowance(host, now)}});
  }
  auto& buckets = j["buckets"] = nlohmann::json::array();
  for (const auto& b : core.buckets(now)) {
    buckets.push_back({{"host", b.key.host},
                       {"bucket", b.key.bucket},
                       {"tokens", b.tokens},
                       {"shared_limit", opt(b.shared_limit)},
                       {"shared_left", opt(b.shared_left)},
                       {"shared_reset", opt(b.shared_reset_epoch)},
                       {"used_this_window", b.local_used}});
  }
  return j;
}

}  // namespace okta_sidecar::fleet
