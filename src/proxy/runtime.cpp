#include "okta_sidecar/proxy/runtime.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "okta_sidecar/ratelimit/path.hpp"
#include "okta_sidecar/resilience/settings.hpp"

namespace okta_sidecar::proxy {
namespace {

std::string read_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(std::string(what) + ": cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

bool runtime::is_interactive(std::string_view normalized_path) const {
  for (const auto& p : interactive_paths) {
    if (ratelimit::path_glob_match(p, normalized_path)) return true;
  }
  return false;
}

std::shared_ptr<const runtime> runtime::build(const config::config& c) {
  auto classifier = ratelimit::classifier::builtin();
  if (c.rate_limit.buckets_file && !c.rate_limit.buckets_file->empty()) {
    const auto& path = *c.rate_limit.buckets_file;
    classifier.merge(ratelimit::classifier::from_json(read_file(path, "rate_limit.buckets_file"), path));
  }
  policy::proxy_auth auth;
  std::string auth_lines;
  if (c.access.proxy_auth_file)
    auth_lines += read_file(*c.access.proxy_auth_file, "access.proxy_auth_file") + "\n";
  if (c.access.proxy_auth_env) {
    const char* v = std::getenv(c.access.proxy_auth_env->c_str());
    if (!v || !*v) {
      throw std::runtime_error("access.proxy_auth_env: environment variable " + *c.access.proxy_auth_env +
                               " is not set");
    }
    auth_lines += std::string(v) + "\n";
  }
  if (!auth_lines.empty()) auth = policy::proxy_auth::from_lines(auth_lines);

  http::limits limits;
  limits.max_header_bytes = c.client.max_header_bytes;
  limits.max_header_count = c.client.max_header_count;
  limits.max_body_bytes = c.client.max_body_bytes;

  ratelimit::scheduler_settings sched;
  sched.max_wait = milliseconds(c.rate_limit.max_wait_ms);
  sched.max_queue = c.rate_limit.max_queue;
  sched.max_queue_total = c.rate_limit.max_queue_total;
  sched.max_instances_per_host = c.rate_limit.max_auth_servers_per_host;
  sched.max_concurrency = c.rate_limit.max_concurrency;
  sched.initial_concurrency = c.rate_limit.initial_concurrency;
  sched.capacity_percent = c.rate_limit.capacity_percent;
  sched.reserve_fraction = c.rate_limit.reserve_fraction;

  const auto breaker = resilience::to_breaker_settings(c.circuit_breaker);
  const auto retry = resilience::to_retry_settings(c.retry);

  return std::make_shared<const runtime>(runtime{
      c,
      policy::host_policy(c.intercept_hosts, c.tunnel_hosts, c.access.allowed_ports),
      std::move(classifier),
      limits,
      std::move(auth),
      policy::cidr_list::parse(c.access.allowed_clients),
      auth::scope_table::builtin(),
      sched,
      breaker,
      retry,
      c.rate_limit.interactive_paths,
  });
}

}  // namespace okta_sidecar::proxy
