#pragma once
// What every layer of a client connection shares (the layers are listed in session.cpp): the
// stream and HTTP types, the connection's context, one request's record, where a request goes.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/container/small_vector.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/auth/token_info.hpp"
#include "okta_sidecar/http/text.hpp"
#include "okta_sidecar/net/block_cache.hpp"
#include "okta_sidecar/net/stream.hpp"
#include "okta_sidecar/proxy/server.hpp"
#include "okta_sidecar/upstream/connection_pool.hpp"

namespace okta_sidecar::proxy::detail {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
inline constexpr std::size_t relay_chunk = 16 * 1024;

// The relay_chunk bytes a body passes through, lent by its thread's block_cache: a coroutine
// holds them only while it relays. As an array in the coroutine's frame they made that frame
// a 17 KB allocation of its own for every request, too big for any allocator cache.
class relay_buffer {
 public:
  using cache = net::block_cache<relay_chunk, 8>;
  relay_buffer() : p_(static_cast<char*>(cache::get())) {}
  ~relay_buffer() { cache::put(p_); }
  relay_buffer(const relay_buffer&) = delete;
  relay_buffer& operator=(const relay_buffer&) = delete;
  char* data() { return p_; }
  static constexpr std::size_t size() { return relay_chunk; }

 private:
  char* p_;
};

// A message's fields as views, on the stack for the usual few dozen (keep it out of coroutine
// frames: use it inside a plain function).
inline boost::container::small_vector<http::header_view, 24> views(const bhttp::fields& f) {
  boost::container::small_vector<http::header_view, 24> out;
  for (const auto& h : f) out.emplace_back(h.name_string(), h.value());
  return out;
}

inline std::int64_t epoch_now(const clock_source& c) {
  return std::chrono::duration_cast<seconds>(c.wall_now().time_since_epoch()).count();
}

inline double random01() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// What one request did, for the access log and metrics.
struct request_record {
  std::uint64_t id = 0;
  std::string method;
  std::string host;
  std::string target;  // as the client sent it; redacted when logged
  std::string bucket = "-";
  int status = 0;
  int upstream_status = 0;
  std::string local_reason;
  std::string error;  // what went wrong after the response began (truncated body...)
  std::uint64_t bytes_out = 0;
  std::string okta_request_id;
  std::uint32_t attempts = 0;
  double queue_wait_ms = 0;
  time_point started{};
  std::string trace_id;  // from the request's traceparent, to join the app's traces
  // The (host, bucket) series, resolved once host and bucket are final (identify(), or at the end).
  metrics::bucket_series* series = nullptr;
};

// Where the policy sends an absolute-form target's (scheme, host, port): worked out once per
// connection, destination and runtime (a reload brings another policy), since a connection
// nearly always names one host. `host` is the normalised host, empty when it is invalid.
struct host_route {
  std::shared_ptr<const runtime> rt;  // held, so another runtime cannot take its address
  bool https = false;
  std::string host_as_sent;  // parse_absolute_form's host
  std::uint16_t port = 0;
  std::string host;
  bool cleartext_refused = false;  // http:// to an intercepted host while allow_cleartext is off
  bool inspect = true;
  std::string refuse;  // the policy's reason, when it refuses
};

// A request's Authorization as read (auth::inspect_caller), and the digest request coalescing
// keys it by, taken when coalescing first asks.
struct known_caller {
  auth::caller_info info;
  std::string coalesce_credential;
};

struct conn_ctx {
  services& svc;
  std::uint64_t id;
  session_control& ctl;
  std::string peer;
  std::uint64_t rt_seen = 0;  // svc.rt's generation when `rt` was taken (current_runtime::refresh)
  std::shared_ptr<const runtime> rt;
  std::string user{};  // the proxy-auth user, once authenticated (also inside its CONNECT tunnel)
  // Set by an intercepted CONNECT: where the requests on this connection go from then on.
  std::optional<upstream::origin> tunnel{};
  // The latest absolute-form destination's route (route_of in session.cpp). On the heap: an
  // intercepted connection never has one, and its idle size is a target (docs/benchmarks.md).
  std::unique_ptr<host_route> last_route{};
  // The last request's Authorization read (token, fingerprint, caller key): the next request
  // nearly always carries the same one. Dropped when the connection parks (park in session.cpp).
  std::shared_ptr<known_caller> caller{};
};

// Where a request goes and how it may be treated.
struct destination {
  upstream::origin origin;
  std::string path_and_query;
  bool inspect = true;  // false for tunnel_hosts reached by absolute-form: forwarded as is
};

}  // namespace okta_sidecar::proxy::detail
