#include "okta_sidecar/app/app.hpp"

#include <signal.h>  // pthread_sigmask

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <csignal>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>

#include "okta_sidecar/admin/admin_server.hpp"
#include "okta_sidecar/admin/systemd_notify.hpp"
#include "okta_sidecar/app/heap.hpp"
#include "okta_sidecar/app/process_metrics.hpp"
#include "okta_sidecar/config/syntax.hpp"
#include "okta_sidecar/fleet/fleet_service.hpp"
#include "okta_sidecar/metrics/history.hpp"
#include "okta_sidecar/proxy/server.hpp"
#include "okta_sidecar/ratelimit/http_date.hpp"
#include "okta_sidecar/tls/ca_bundle.hpp"
#include "okta_sidecar/tls/certificate_authority.hpp"
#include "okta_sidecar/tls/fingerprint_key.hpp"
#include "okta_sidecar/tls/intercept_context.hpp"
#include "okta_sidecar/tls/upstream_context.hpp"

namespace okta_sidecar::app {
namespace {

namespace asio = boost::asio;

// An io_context whose pending work can be destroyed early. Suspended coroutines live in the
// handlers it holds; left to ~io_context they would be destroyed after the objects declared
// after it (the upstream pool: a heap-use-after-free when SIGTERM met a hung request).
class app_io_context : public asio::io_context {
 public:
  using io_context::io_context;
  void destroy_pending_work() { shutdown(); }
};
using tcp = asio::ip::tcp;
using logging::event;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

tcp::endpoint to_endpoint(asio::io_context& ioc, const config::endpoint& e) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(e.host, ec);
  if (!ec) return {addr, e.port};
  tcp::resolver r(ioc);
  auto results = r.resolve(e.host, std::to_string(e.port), ec);
  if (ec || results.empty()) {
    throw std::system_error(ec, "cannot resolve listen address " + e.to_string());
  }
  return results.begin()->endpoint();
}

std::string endpoint_text(const tcp::endpoint& ep) {
  if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

nlohmann::json opt(const std::optional<std::int64_t>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

cache::cache_settings cache_settings_of(const config::config& c) {
  cache::cache_settings s;
  s.enabled = c.cache.enabled;
  s.stale_if_error = seconds(c.cache.stale_if_error_s);
  return s;
}

// The /status document (docs/architecture.md contract, extended with hosts, diagnoses and uptime).
std::string status_json(proxy::services& svc, time_point started, const fleet::fleet_service* fleet) {
  const auto now = svc.clock.now();
  nlohmann::json doc;
  auto& buckets = doc["buckets"] = nlohmann::json::array();
  for (const auto& b : svc.gate.buckets()) {
    buckets.push_back(
        {{"host", b.key.host},
         {"bucket", b.key.bucket},
         {"limit", opt(b.limit)},
         {"remaining", opt(b.remaining)},
         {"reset", opt(b.reset_epoch)},
         {"reset_in_ms", b.reset_in
                             ? nlohmann::json(std::chrono::duration_cast<milliseconds>(*b.reset_in).count())
                             : nlohmann::json()},
         {"queued", b.queued},
         {"inflight", b.inflight},
         {"capacity_percent", b.capacity_percent}});
  }
  auto& breakers = doc["breakers"] = nlohmann::json::array();
  for (const auto& b : svc.breakers.states(now)) {
    breakers.push_back({{"host", b.host},
                        {"state", resilience::to_string(b.state)},
                        {"retry_after_ms", std::chrono::duration_cast<milliseconds>(b.retry_after).count()},
                        {"times_opened", b.opened}});
  }
  auto& hosts = doc["hosts"] = nlohmann::json::array();
  for (const auto& h : svc.gate.hosts()) {
    hosts.push_back({{"host", h.host},
                     {"inflight", h.inflight},
                     {"cap", h.cap},
                     {"queued", h.queued},
                     {"cap_source", ratelimit::to_string(h.cap_source)},
                     {"refused_at", h.refused ? nlohmann::json(*h.refused) : nlohmann::json()},
                     {"cap_backoffs", h.backoffs}});
  }
  const auto shared = svc.reads.snapshot();
  doc["coalesced"] = shared.coalesced;
  doc["cache"] = {{"enabled", svc.rt.load()->cfg.cache.enabled},
                  {"hits", shared.cache.hits},
                  {"stale_served", shared.cache.stale_served},
                  {"stores", shared.cache.stores},
                  {"evictions", shared.cache.evictions},
                  {"entries", shared.cache_entries},
                  {"bytes", shared.cache_bytes}};
  doc["capacity_percent"] = svc.rt.load()->cfg.rate_limit.capacity_percent;
  doc["auth_diagnoses"] = svc.diagnoses.snapshot();
  doc["uptime_s"] = std::chrono::duration_cast<seconds>(now - started).count();
  doc["version"] = version;
  doc["draining"] = svc.draining.load();
  doc["fleet"] = fleet ? fleet->status() : nlohmann::json();
  return doc.dump();
}

// Host names that may appear as metric labels: configured exact intercept hosts and the hosts
// of upstream.resolve keys; everything else is "other" (issue 14: bounded label sets).
std::vector<std::string> label_hosts(const proxy::runtime& rt) {
  std::vector<std::string> out = rt.hosts.exact_intercept_hosts();
  for (const auto& [key, to] : rt.cfg.upstream.resolve) {
    if (auto ep = config::parse_endpoint(key)) {
      if (auto h = policy::host_policy::normalize_host(ep->host)) out.push_back(*h);
    }
  }
  return out;
}

// What a CA the sidecar generates may sign (issue 14): Okta's domains, the configured wildcard
// suffixes and exact intercept hosts. Nothing else, so a copied key is no master key.
std::vector<std::string> ca_permitted(const proxy::runtime& rt) {
  std::vector<std::string> out = {"okta.com", "oktapreview.com", "okta-emea.com", "okta-gov.com"};
  for (auto& s : rt.hosts.intercept_suffixes()) out.push_back(std::move(s));
  for (auto& h : rt.hosts.exact_intercept_hosts()) out.push_back(std::move(h));
  std::vector<std::string> unique;
  for (auto& n : out)
    if (std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(std::move(n));
  return unique;
}

// Scrape-time samples under bounded labels: several hosts or ids may share one label, so
// values are combined (sums for counts, the minimum for limits and remaining budget).
enum class combine { sum, min, max };
std::vector<metrics::registry::sample> combined(std::map<std::vector<std::string>, double> m) {
  std::vector<metrics::registry::sample> out;
  out.reserve(m.size());
  for (auto& [labels, v] : m) out.emplace_back(labels, v);
  return out;
}
void add_to(std::map<std::vector<std::string>, double>& m, std::vector<std::string> labels, double v,
            combine how) {
  auto [it, fresh] = m.emplace(std::move(labels), v);
  if (fresh) return;
  switch (how) {
    case combine::sum:
      it->second += v;
      break;
    case combine::min:
      it->second = std::min(it->second, v);
      break;
    case combine::max:
      it->second = std::max(it->second, v);
      break;
  }
}

void add_scrape_gauges(metrics::registry& r, proxy::services& svc, const tls::leaf_cache& leaves,
                       metrics::label_bounds& bounds) {
  using samples = std::vector<metrics::registry::sample>;
  auto per_bucket = [&svc, &bounds](auto field, combine how) {
    return [&svc, &bounds, field, how]() {
      std::map<std::vector<std::string>, double> m;
      for (const auto& b : svc.gate.buckets()) {
        if (auto v = field(b)) {
          auto [h, name] = bounds.host_bucket(b.key.host, b.key.bucket);
          add_to(m, {std::move(h), std::move(name)}, *v, how);
        }
      }
      return combined(std::move(m));
    };
  };
  r.add_callback_gauge("okta_sidecar_bucket_limit", "Last X-Rate-Limit-Limit seen per bucket",
                       {"host", "bucket"},
                       per_bucket(
                           [](const ratelimit::bucket_status& b) -> std::optional<double> {
                             return b.limit ? std::optional<double>(*b.limit) : std::nullopt;
                           },
                           combine::min));
  r.add_callback_gauge("okta_sidecar_bucket_remaining", "Estimated requests left in the current window",
                       {"host", "bucket"},
                       per_bucket(
                           [](const ratelimit::bucket_status& b) -> std::optional<double> {
                             return b.remaining ? std::optional<double>(*b.remaining) : std::nullopt;
                           },
                           combine::min));
  r.add_callback_gauge("okta_sidecar_queue_depth", "Requests waiting for admission", {"host", "bucket"},
                       per_bucket([](const ratelimit::bucket_status& b)
                                      -> std::optional<double> { return static_cast<double>(b.queued); },
                                  combine::sum));
  r.add_callback_gauge("okta_sidecar_bucket_inflight", "Admitted requests not yet answered",
                       {"host", "bucket"},
                       per_bucket([](const ratelimit::bucket_status& b)
                                      -> std::optional<double> { return static_cast<double>(b.inflight); },
                                  combine::sum));
  r.add_callback_gauge("okta_sidecar_host_inflight_cap", "Current in-flight cap per upstream host", {"host"},
                       [&svc, &bounds]() {
                         std::map<std::vector<std::string>, double> m;
                         for (const auto& h : svc.gate.hosts())
                           add_to(m, {bounds.host(h.host)}, static_cast<double>(h.cap), combine::min);
                         return combined(std::move(m));
                       });
  r.add_callback_counter("okta_sidecar_coalesced_total",
                         "Requests answered with the response of an identical concurrent request", {},
                         [&svc]() {
                           return samples{{{}, static_cast<double>(svc.reads.snapshot().coalesced)}};
                         });
  r.add_callback_counter("okta_sidecar_cache_responses_total",
                         "Responses served from the cache of Okta's public documents, by result", {"result"},
                         [&svc]() {
                           const auto s = svc.reads.snapshot();
                           return samples{{{"hit"}, static_cast<double>(s.cache.hits)},
                                          {{"stale"}, static_cast<double>(s.cache.stale_served)}};
                         });
  r.add_callback_gauge("okta_sidecar_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open",
                       {"host"}, [&svc, &bounds]() {
                         std::map<std::vector<std::string>, double> m;
                         for (const auto& b : svc.breakers.states(svc.clock.now())) {
                           const double v = b.state == resilience::breaker_state::closed      ? 0
                                            : b.state == resilience::breaker_state::half_open ? 1
                                                                                              : 2;
                           add_to(m, {bounds.host(b.host)}, v, combine::max);
                         }
                         return combined(std::move(m));
                       });
  r.add_callback_counter("okta_sidecar_breaker_opened_total", "How often each host's breaker opened",
                         {"host"}, [&svc, &bounds]() {
                           std::map<std::vector<std::string>, double> m;
                           for (const auto& b : svc.breakers.states(svc.clock.now()))
                             add_to(m, {bounds.host(b.host)}, static_cast<double>(b.opened), combine::sum);
                           return combined(std::move(m));
                         });
  r.add_callback_gauge(
      "okta_sidecar_upstream_connections", "Upstream connections by state", {"state"}, [&svc]() {
        auto s = svc.pool.stats();
        return samples{{{"idle"}, static_cast<double>(s.idle)}, {{"active"}, static_cast<double>(s.active)}};
      });
  r.add_callback_counter("okta_sidecar_upstream_connections_opened_total", "Upstream connections opened", {},
                         [&svc]() {
                           return samples{{{}, static_cast<double>(svc.pool.stats().opened)}};
                         });
  r.add_callback_counter("okta_sidecar_upstream_connections_reused_total",
                         "Requests that reused a pooled connection", {}, [&svc]() {
                           return samples{{{}, static_cast<double>(svc.pool.stats().reused)}};
                         });
  r.add_callback_counter("okta_sidecar_upstream_connections_unsolicited_total",
                         "Idle upstream connections discarded because the server sent bytes nobody asked for",
                         {}, [&svc]() {
                           return samples{{{}, static_cast<double>(svc.pool.stats().unsolicited)}};
                         });
  r.add_callback_counter("okta_sidecar_leaf_certificates_minted_total", "Leaf certificates minted", {},
                         [&leaves]() {
                           return samples{{{}, static_cast<double>(leaves.minted_count())}};
                         });
  r.add_callback_gauge(
      "okta_sidecar_client_connections_max",
      "client.max_connections: accepting pauses when okta_sidecar_client_connections_open reaches it", {},
      [&svc]() {
        return samples{{{}, static_cast<double>(svc.rt.load()->cfg.client.max_connections)}};
      });
  // How many entries the maps keyed by client input hold (issue 14: each is capped).
  r.add_callback_gauge("okta_sidecar_state_entries", "Entries kept in maps keyed by client input", {"map"},
                       [&svc, &leaves]() {
                         return samples{
                             {{"buckets"}, static_cast<double>(svc.gate.bucket_count())},
                             {{"breakers"}, static_cast<double>(svc.breakers.size())},
                             {{"upstream_origins"}, static_cast<double>(svc.pool.stats().origins)},
                             {{"leaf_certificates"}, static_cast<double>(leaves.size())},
                         };
                       });
  r.add_callback_gauge("okta_sidecar_draining", "1 while the sidecar drains for shutdown", {}, [&svc]() {
    return samples{{{}, svc.draining.load() ? 1.0 : 0.0}};
  });
}

// One point per bucket for the dashboard's charts: the scheduler's figures plus the bucket's
// absorbed-429 and queue-wait totals (the history turns totals into per-interval figures).
std::vector<metrics::history::bucket_sample> sample_buckets(proxy::services& svc) {
  std::vector<metrics::history::bucket_sample> out;
  for (const auto& b : svc.gate.buckets()) {
    const auto waits = svc.metrics.queue_wait.with({b.key.host, b.key.bucket}).read();
    out.push_back({b.key.host, b.key.bucket, b.limit, b.remaining, b.queued, b.inflight,
                   svc.metrics.absorbed_429.with({b.key.host, b.key.bucket}).value(), waits.sum,
                   static_cast<double>(waits.count)});
  }
  return out;
}

// <state_dir>/ca-bundle.pem, next to ca.crt, for tools that replace their trust store. A
// failure costs only the file (GET /ca-bundle.pem still serves the bundle), so it is logged.
std::string publish_ca_bundle(const config::config& cfg, const tls::certificate_authority& ca,
                              const logging::log& log) {
  std::string roots;
  const std::string roots_file = tls::read_system_roots(roots);
  if (roots.empty()) {
    log.warn(event("no system trust store found; ca-bundle.pem holds only the local CA"));
  }
  std::string bundle = tls::make_ca_bundle(roots, ca.certificate_pem());
  const std::filesystem::path file = std::filesystem::path(cfg.state_dir) / "ca-bundle.pem";
  try {
    std::error_code ec;
    std::filesystem::create_directories(cfg.state_dir, ec);
    tls::write_public_file(file.string(), bundle);
  } catch (const std::exception& e) {
    log.warn(event("cannot write the CA bundle").with("error", e.what()));
  }
  log.info(event("CA bundle").with("file", file.string()).with("system_roots", roots_file));
  return bundle;
}

double wall_seconds(const clock_source& clock) {
  return std::chrono::duration<double>(clock.wall_now().time_since_epoch()).count();
}

// The CA (loaded, or made for the intercepted domains) and the fingerprint key, both in
// state_dir. Returns the exit code on failure, 0 when both are usable.
int load_local_keys(const config::config& cfg, const proxy::runtime& rt, const logging::log& log,
                    std::optional<tls::certificate_authority>& ca,
                    std::optional<tls::fingerprint_key>& fingerprints) {
  try {
    fingerprints.emplace(tls::fingerprint_key::load_or_create(cfg.state_dir));  // makes state_dir 0700
    ca.emplace(
        tls::certificate_authority::load_or_create(cfg.ca.cert_file, cfg.ca.key_file, ca_permitted(rt)));
  } catch (const std::exception& e) {
    log.error(event("local CA unusable").with("error", e.what()));
    return 1;
  }
  // A loaded CA whose nameConstraints leave out an intercepted host would mint certificates
  // every client rejects: a configuration error, said at start rather than per handshake.
  if (auto host = ca->host_outside_constraints(cfg.intercept_hosts)) {
    log.error(event("invalid configuration")
                  .with("error", "intercept_hosts: \"" + *host +
                                     "\" is outside the name constraints of the CA in " + cfg.ca.cert_file +
                                     "; remove both CA files to have a CA made for the configured hosts, or "
                                     "provide a CA that permits it"));
    return 2;
  }
  return 0;
}

// The client side of upstream TLS. Returns the exit code on failure, 0 otherwise.
int make_upstream_tls(const config::config& cfg, const logging::log& log,
                      std::optional<asio::ssl::context>& upstream_ctx) {
  try {
    upstream_ctx.emplace(
        tls::make_upstream_context(cfg.upstream.trust_file, cfg.upstream.insecure_skip_verify));
  } catch (const std::exception& e) {
    log.error(event("upstream TLS setup failed").with("error", e.what()));
    return 2;
  }
  if (cfg.upstream.insecure_skip_verify) {
    log.warn(
        event("UPSTREAM CERTIFICATE VERIFICATION IS OFF (upstream.insecure_skip_verify): "
              "anyone on the path can read every token; never use this in production"));
  }
  return 0;
}

struct app_gauges {
  metrics::gauge& reload_ok;
  metrics::gauge& reload_ok_at;
};

// The reload gauges (set for the configuration loaded at start) and the internal-error count.
app_gauges add_app_gauges(metrics::registry& registry, const clock_source& clock,
                          const std::atomic<std::uint64_t>& internal_errors) {
  app_gauges g{registry
                   .add_gauge("okta_sidecar_config_last_reload_successful",
                              "1 if the last configuration reload (SIGHUP) was applied, 0 if it was rejected")
                   .with({}),
               registry
                   .add_gauge("okta_sidecar_config_last_reload_success_timestamp_seconds",
                              "When the configuration was last loaded successfully (start or SIGHUP)")
                   .with({})};
  g.reload_ok.set(1);
  g.reload_ok_at.set(wall_seconds(clock));
  registry.add_callback_counter(
      "okta_sidecar_internal_errors_total", "Exceptions caught out of I/O handlers (each one is a bug)", {},
      [&internal_errors]() {
        return std::vector<metrics::registry::sample>{{{}, static_cast<double>(internal_errors.load())}};
      });
  return g;
}

// Runs one event loop until it stops. No input may end the process: an exception out of a
// handler (a bug; every parser limit is an error code) is logged and counted, and the thread
// goes back to serving. Asio allows run() to be called again after it threw.
void serve_until_stopped(app_io_context& ioc, const logging::log& log,
                         std::atomic<std::uint64_t>& internal_errors) {
  for (;;) {
    try {
      ioc.run();
      return;
    } catch (const std::exception& e) {
      ++internal_errors;
      log.error(event("I/O handler failed; serving on").with("error", e.what()));
    }
  }
}

// The event loops beyond the main one when `threads` > 1: each is run by one thread and serves
// its own sessions (and, through them, its own upstream connections), so nothing a session
// touches needs a strand; what sessions share (the gate, breakers, pool lists, metrics) takes
// its own short lock. The main loop also serves sessions, besides the listeners and timers.
class worker_loops {
 public:
  explicit worker_loops(unsigned count) {
    for (unsigned i = 0; i < count; ++i) {
      loops_.push_back(std::make_unique<app_io_context>(1));
      guards_.push_back(asio::make_work_guard(*loops_.back()));
    }
  }
  worker_loops(const worker_loops&) = delete;
  worker_loops& operator=(const worker_loops&) = delete;
  ~worker_loops() { stop(); }

  // Where sessions run: the main loop, then each worker.
  std::vector<asio::io_context*> session_loops(asio::io_context& main) const {
    std::vector<asio::io_context*> out{&main};
    for (const auto& l : loops_) out.push_back(l.get());
    return out;
  }
  void start(const logging::log& log, std::atomic<std::uint64_t>& internal_errors) {
    for (auto& l : loops_) {
      threads_.emplace_back(
          [&loop = *l, &log, &internal_errors] { serve_until_stopped(loop, log, internal_errors); });
    }
  }
  // Stops every loop and joins its thread, then destroys what is still suspended on them while
  // the objects those coroutines use still exist.
  void stop() {
    guards_.clear();
    for (auto& l : loops_) l->stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    for (auto& l : loops_) l->destroy_pending_work();
  }

 private:
  std::vector<std::unique_ptr<app_io_context>> loops_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

// The local keys and TLS contexts, each built in place: the leaf cache refers to the CA, the
// intercepting context to the leaf cache. That context's SNI check reads the services' runtime,
// and the services come later (`svc`, set once they exist).
struct local_tls {
  std::optional<tls::certificate_authority> ca;
  std::optional<tls::fingerprint_key> fingerprints;
  std::optional<tls::leaf_cache> leaves;
  std::string ca_bundle;
  std::optional<asio::ssl::context> intercept_ctx;
  std::optional<asio::ssl::context> upstream_ctx;
  const proxy::services* svc = nullptr;

  // The exit code on failure, 0 otherwise.
  int load(const config::config& cfg, const proxy::runtime& rt, const logging::log& log) {
    if (const int code = load_local_keys(cfg, rt, log, ca, fingerprints)) return code;
    leaves.emplace(*ca);
    ca_bundle = publish_ca_bundle(cfg, *ca, log);
    intercept_ctx.emplace(tls::make_intercept_context(*leaves, [this](std::string_view host) {
      // SNI must name a host we intercept; the CONNECT host is checked separately.
      return svc->rt.load()->hosts.decide(host, 443).r == policy::route::intercept;
    }));
    return make_upstream_tls(cfg, log, upstream_ctx);
  }
};

unsigned thread_count(const config::config& cfg) {
  return cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
}

// A fleet setting the fleet service refuses: a configuration error (exit 2), where anything else
// that fails while the proxy is being built is a runtime failure (exit 1).
struct invalid_fleet_setting : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::unique_ptr<fleet::fleet_service> make_fleet(const config::config& cfg, asio::io_context& ioc,
                                                 const clock_source& clock, const logging::log& log,
                                                 metrics::registry& registry) {
  if (!cfg.fleet) return nullptr;
  try {
    return std::make_unique<fleet::fleet_service>(ioc, fleet::fleet_service_settings::from_config(cfg), clock,
                                                  log, registry);
  } catch (const std::exception& e) {
    throw invalid_fleet_setting(e.what());
  }
}

// What the sessions share, built in the order each needs the ones before it and destroyed in
// reverse, after the listeners and every session (serve() stops those first).
struct proxy_core {
  proxy_core(const config::config& cfg, const std::shared_ptr<const proxy::runtime>& rt, local_tls& keys,
             const clock_source& clock, const logging::log& log)
      : threads(thread_count(cfg)),
        workers(threads - 1),
        pool(*keys.upstream_ctx, upstream::connection_pool::from_config(cfg)),
        fleet(make_fleet(cfg, ioc, clock, log, registry)),
        gate(ioc, rt->scheduler, clock, fleet ? fleet->make_store() : nullptr),
        breakers(rt->breaker, rt->retry, [this](const std::string& host) { held_for_probe.wake(host); }),
        reads(cache_settings_of(cfg)),
        svc{clock, log,       *keys.leaves, *keys.intercept_ctx,
            pool,  gate,      breakers,     held_for_probe,
            pm,    diagnoses, okta_clock,   reads,
            {},    {},        {},           {}},
        bounds(label_hosts(*rt), rt->classifier.literal_buckets(), cfg.rate_limit.max_auth_servers_per_host),
        gauges(add_app_gauges(registry, clock, internal_errors)) {
    svc.rt.store(rt);
    svc.digest = [&keys](std::string_view credential) { return keys.fingerprints->digest(credential); };
    keys.svc = &svc;
    pm.bound_labels(bounds);
    add_scrape_gauges(registry, svc, *keys.leaves, bounds);
    add_process_metrics(registry, version);
  }

  const unsigned threads;
  app_io_context ioc{1};
  worker_loops workers;
  metrics::registry registry;
  proxy::proxy_metrics pm{registry};
  upstream::connection_pool pool;
  std::unique_ptr<fleet::fleet_service> fleet;
  proxy::rate_gate gate;
  proxy::probe_waiters held_for_probe;
  resilience::breaker_board breakers;
  auth::diagnosis_log diagnoses;
  ratelimit::shared_okta_clock okta_clock;
  proxy::shared_reads reads;
  proxy::services svc;
  metrics::label_bounds bounds;
  std::atomic<std::uint64_t> internal_errors{0};
  app_gauges gauges;
  metrics::history history;
};

// What the drain and a reload act on, built by serve() and alive until it returns.
struct running {
  const clock_source& clock;
  const logging::log& log;
  proxy_core& core;
  proxy::server& server;
  admin::admin_server& admin_srv;
  std::function<config::parse_result()> reload;
};

// SIGTERM/SIGINT: stop accepting, say so (/readyz 503), let in-flight work finish until the
// drain deadline, answer what is still queued 503, then cut the rest short and stop.
asio::awaitable<void> drain(running& r) {
  // Stop accepting first, and only then say so (/readyz 503): a load balancer that sees
  // "draining" must not find the port still taking connections.
  r.server.stop_accepting();
  const auto t_ex = co_await asio::this_coro::executor;
  asio::steady_timer t(t_ex);
  while (!r.server.listener_closed()) {
    t.expires_after(milliseconds(1));
    co_await t.async_wait(use_tuple);
  }
  r.core.svc.draining.store(true);
  admin::notify_stopping();
  r.log.info(event("draining")
                 .with("open_connections", r.server.active_sessions())
                 .with("queued", r.core.svc.gate.queued()));
  // Waits while sessions are open, closing idle ones, until `until`.
  auto wait_sessions = [&](time_point until, duration step, bool close_idle) -> asio::awaitable<void> {
    while (r.server.active_sessions() > 0 && r.clock.now() < until) {
      if (close_idle) r.server.close_idle_sessions();
      t.expires_after(step);
      co_await t.async_wait(use_tuple);
    }
  };
  co_await wait_sessions(r.clock.now() + milliseconds(r.core.svc.rt.load()->cfg.client.drain_timeout_ms),
                         milliseconds(50), true);
  // Past the drain deadline, queued requests are answered 503 shutting_down.
  r.core.svc.gate.drain();
  co_await wait_sessions(r.clock.now() + seconds(2), milliseconds(20), true);
  // Whatever is still running now is cut short, so that no coroutine outlives the objects
  // it uses when the io_context is destroyed.
  r.server.cancel_all_sessions();
  co_await wait_sessions(r.clock.now() + seconds(1), milliseconds(10), false);
  r.log.info(event("stopped").with("connections_left", r.server.active_sessions()));
  r.admin_srv.stop();
  if (r.core.fleet) r.core.fleet->stop();
  r.core.pool.close_all();
  r.core.ioc.stop();
}

// SIGHUP: a valid new configuration replaces the running one (what only a restart can change
// is said so); an invalid one is rejected and the old one kept.
void apply_reload(running& r) {
  admin::notify_reloading();
  auto parsed = r.reload();
  if (!parsed.ok()) {
    r.log.error(event("reload rejected; keeping the running configuration").with("errors", parsed.errors));
    r.core.gauges.reload_ok.set(0);
    admin::notify_ready();
    return;
  }
  try {
    auto next = proxy::runtime::build(parsed.cfg);
    const auto& old = r.core.svc.rt.load()->cfg;
    const auto& c = parsed.cfg;
    if (c.listen.to_string() != old.listen.to_string() ||
        c.admin_listen.to_string() != old.admin_listen.to_string() || c.threads != old.threads ||
        c.ca.cert_file != old.ca.cert_file || c.ca.key_file != old.ca.key_file ||
        c.upstream.trust_file != old.upstream.trust_file || c.state_dir != old.state_dir ||
        c.admin != old.admin) {
      r.log.warn(
          event("listen addresses, threads, CA, state_dir, admin.* and upstream.trust_file change only on "
                "restart"));
    }
    r.core.svc.rt.store(next);
    r.core.bounds.update(label_hosts(*next), next->classifier.literal_buckets());
    r.core.svc.gate.update_settings(next->scheduler);
    r.core.svc.breakers.update_settings(next->breaker, next->retry);
    r.core.svc.reads.update_settings(cache_settings_of(c));
    r.core.pool.update_settings(upstream::connection_pool::from_config(c));
    logging::set_level(r.log.logger(), c.log.level);
    r.log.info(event("configuration reloaded"));
    r.core.gauges.reload_ok.set(1);
    r.core.gauges.reload_ok_at.set(wall_seconds(r.clock));
  } catch (const std::exception& e) {
    r.log.error(event("reload rejected; keeping the running configuration")
                    .with("errors", nlohmann::json::array({e.what()})));
    r.core.gauges.reload_ok.set(0);
  }
  admin::notify_ready();
}

// The admin routes' data sources.
admin::handlers admin_handlers(proxy::services& svc, metrics::registry& registry, time_point started,
                               const fleet::fleet_service* fleet, const tls::certificate_authority& ca,
                               const std::string& ca_bundle, const metrics::history& history) {
  admin::handlers h;
  h.ready = [&svc] { return !svc.draining.load(); };
  // Without it a draining sidecar's /readyz said "starting" (docs/architecture.md: 503 while draining).
  h.draining = [&svc] { return svc.draining.load(); };
  h.metrics = [&registry] { return registry.render(); };
  h.status_json = [&svc, started, fleet] { return status_json(svc, started, fleet); };
  h.ca_pem = [&ca] { return ca.certificate_pem(); };
  h.ca_bundle_pem = [&ca_bundle] { return ca_bundle; };
  h.config_json = [&svc] { return config::to_json(svc.rt.load()->cfg, config::secrets::redact).dump(2); };
  h.history_json = [&history] { return history.to_json().dump(); };
  return h;
}

// Listening beyond loopback without the guards that make it safe is allowed, but said.
void warn_about_exposure(const config::config& cfg, const proxy::runtime& rt, const proxy::server& server,
                         const admin::admin_server& admin_srv, const logging::log& log) {
  // A proxy port reachable from the network, with neither proxy authentication nor
  // access.allowed_clients, lets anyone who reaches it spend the tenant's budget.
  if (!server.local_endpoint().address().is_loopback() && !rt.proxy_auth.enabled() &&
      cfg.access.allowed_clients.empty()) {
    log.warn(event("the proxy listens beyond loopback without proxy authentication or "
                   "access.allowed_clients: anyone who can reach the port can use it")
                 .with("listen", endpoint_text(server.local_endpoint())));
  }
  if (!admin_srv.local_endpoint().address().is_loopback() && cfg.admin.expose_status) {
    log.warn(event("admin.expose_status is on and the admin port listens beyond loopback: /status shows "
                   "client ids, token fingerprints and paths to anyone who can reach it")
                 .with("admin_listen", endpoint_text(admin_srv.local_endpoint())));
  }
}

// Background loops on the control strand: systemd watchdog pings, the upstream pool's upkeep and
// the dashboard's history.
void spawn_background(asio::strand<asio::io_context::executor_type>& control, proxy::services& svc,
                      const clock_source& clock, metrics::history& history) {
  // systemd watchdog: ping from the I/O loop, so a wedged loop stops the pings. The pings go
  // on through the drain (it ends with ioc.stop()): systemd keeps the watchdog armed while the
  // service stops, and a drain longer than WatchdogSec/2 would otherwise be killed half-way.
  if (auto interval = admin::watchdog_interval()) {
    asio::co_spawn(
        control,
        [interval]() -> asio::awaitable<void> {
          const auto t_ex = co_await asio::this_coro::executor;
          asio::steady_timer t(t_ex);
          for (;;) {
            admin::notify_watchdog();
            t.expires_after(*interval);
            co_await t.async_wait(use_tuple);
          }
        },
        asio::detached);
  }
  // Upkeep: idle upstream TLS connections' record buffers freed, expired ones closed; the heap's
  // free pages given back once 4 MiB more is free than at the lowest look since the last time
  // (see app/heap.hpp).
  asio::co_spawn(
      control,
      [&svc]() -> asio::awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor);
        heap_trim_policy heap(std::size_t{4} << 20);
        while (!svc.draining.load()) {
          svc.pool.sweep(steady_clock::now());
          const auto start = steady_clock::now();
          if (const auto h = heap_upkeep(heap); h.trimmed) {
            svc.log.debug(event("heap trimmed")
                              .with("free_bytes", h.free_bytes)
                              .with("took_us", std::chrono::duration_cast<std::chrono::microseconds>(
                                                   steady_clock::now() - start)
                                                   .count()));
          }
          t.expires_after(seconds(1));
          auto [ec] = co_await t.async_wait(use_tuple);
          if (ec) co_return;
        }
      },
      asio::detached);
  // The dashboard's history: one point per bucket every interval, kept for 15 minutes.
  asio::co_spawn(
      control,
      [&svc, &clock, &history]() -> asio::awaitable<void> {
        const auto t_ex = co_await asio::this_coro::executor;
        asio::steady_timer t(t_ex);
        while (!svc.draining.load()) {
          const auto now_ms =
              std::chrono::duration_cast<milliseconds>(clock.wall_now().time_since_epoch()).count();
          history.record(now_ms, sample_buckets(svc));
          t.expires_after(milliseconds(history.interval_ms()));
          auto [ec] = co_await t.async_wait(use_tuple);
          if (ec) co_return;
        }
      },
      asio::detached);
}

// The proxy and admin listeners. False when one cannot listen (said in the log).
bool open_listeners(const config::config& cfg, proxy_core& core, const local_tls& keys, time_point started,
                    const logging::log& log, std::unique_ptr<proxy::server>& server,
                    std::unique_ptr<admin::admin_server>& admin_srv) {
  try {
    server = std::make_unique<proxy::server>(core.ioc, core.svc, to_endpoint(core.ioc, cfg.listen),
                                             core.workers.session_loops(core.ioc));
    admin::admin_options admin_opts;
    admin_opts.access.expose_status = cfg.admin.expose_status;
    admin_opts.access.allowed_hosts = cfg.admin.allowed_hosts;
    admin_srv = std::make_unique<admin::admin_server>(
        core.ioc, to_endpoint(core.ioc, cfg.admin_listen),
        admin_handlers(core.svc, core.registry, started, core.fleet.get(), *keys.ca, keys.ca_bundle,
                       core.history),
        admin_opts);
  } catch (const std::exception& e) {
    log.error(event("cannot listen").with("error", e.what()));
    return false;
  }
  return true;
}

// The drain is over and we are tearing down: a repeated SIGTERM/SIGINT (supervisors resend
// them) must not turn a clean exit into death by signal once the signal_set is gone. Asio
// restores SIG_DFL when the set is cleared, so both stay blocked from before that until they
// are ignored (SIG_IGN also discards one that arrived in between). The worker threads have
// been joined: this thread is the only one a signal can go to.
void ignore_stop_signals_from_now(asio::signal_set& signals) {
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigaddset(&term, SIGINT);
  pthread_sigmask(SIG_BLOCK, &term, nullptr);
  boost::system::error_code ignored;
  signals.clear(ignored);
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  pthread_sigmask(SIG_UNBLOCK, &term, nullptr);
}

// Serves until a SIGTERM/SIGINT drain stops the loops (SIGHUP reloads), then destroys the
// sessions still suspended while what they give their leases back to still exists.
void serve(const config::config& cfg, proxy_core& core, proxy::server& server, admin::admin_server& admin_srv,
           const clock_source& clock, const logging::log& log, std::function<config::parse_result()> reload) {
  server.start();
  admin_srv.start();
  if (core.fleet) core.fleet->start();
  auto control = asio::make_strand(core.ioc);
  spawn_background(control, core.svc, clock, core.history);
  running r{clock, log, core, server, admin_srv, std::move(reload)};
  asio::signal_set signals(control, SIGTERM, SIGINT, SIGHUP);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      apply_reload(r);
      signals.async_wait(on_signal);
      return;
    }
    if (core.svc.draining.load()) return;
    asio::co_spawn(control, drain(r), asio::detached);
  };
  signals.async_wait(on_signal);

  // Ready only once SIGTERM/SIGHUP are handled: a supervisor may signal right after READY=1.
  log.info(event("ready")
               .with("listen", endpoint_text(server.local_endpoint()))
               .with("admin_listen", endpoint_text(admin_srv.local_endpoint()))
               .with("version", version)
               .with("threads", core.threads)
               .with("ca_cert", cfg.ca.cert_file));
  admin::notify_ready();
  admin::notify_status("serving");

  core.workers.start(log, core.internal_errors);
  serve_until_stopped(core.ioc, log, core.internal_errors);
  core.workers.stop();
  core.ioc.destroy_pending_work();
  ignore_stop_signals_from_now(signals);
}

}  // namespace

int run(const config::config& cfg, const logging::log& log, std::function<config::parse_result()> reload) {
  system_clock_source clock;
  const auto started = clock.now();
  std::shared_ptr<const proxy::runtime> rt;
  try {
    rt = proxy::runtime::build(cfg);
  } catch (const std::exception& e) {
    log.error(event("invalid configuration").with("error", e.what()));
    return 2;
  }
  local_tls keys;
  if (const int code = keys.load(cfg, *rt, log)) return code;
  std::unique_ptr<proxy_core> core;
  try {
    core = std::make_unique<proxy_core>(cfg, rt, keys, clock, log);
  } catch (const invalid_fleet_setting& e) {
    log.error(event("invalid configuration").with("error", e.what()));
    return 2;
  } catch (const std::exception& e) {
    log.error(event("cannot start").with("error", e.what()));
    return 1;
  }
  std::unique_ptr<proxy::server> server;
  std::unique_ptr<admin::admin_server> admin_srv;
  if (!open_listeners(cfg, *core, keys, started, log, server, admin_srv)) return 1;
  warn_about_exposure(cfg, *rt, *server, *admin_srv, log);
  serve(cfg, *core, *server, *admin_srv, clock, log, std::move(reload));
  log.flush();
  return 0;
}

}  // namespace okta_sidecar::app
