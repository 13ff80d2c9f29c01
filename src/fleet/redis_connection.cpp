#include "okta_sidecar/fleet/redis_connection.hpp"

#include <hiredis/hiredis.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace okta_sidecar::fleet {

namespace {

using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;

redis_value copy_reply(const redisReply* r) {
  redis_value v;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      v.kind = redis_value::type::integer;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      v.kind = redis_value::type::string;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      v.kind = redis_value::type::status;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.kind = redis_value::type::error;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      v.kind = redis_value::type::array;
      v.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(copy_reply(r->element[i]));
      break;
    default:
      v.kind = redis_value::type::nil;
      break;
  }
  return v;
}

}  // namespace

std::string format_command(std::span<const std::string_view> argv) {
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (auto a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  char* out = nullptr;
  const int n = redisFormatCommandArgv(&out, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  if (n < 0 || !out) return {};
  std::string s(out, static_cast<std::size_t>(n));
  redisFreeCommand(out);
  return s;
}

std::string format_command(std::initializer_list<std::string_view> argv) {
  return format_command(std::span<const std::string_view>(argv.begin(), argv.size()));
}

struct resp_reader::impl {
  redisReader* r = redisReaderCreate();
  ~impl() {
    if (r) redisReaderFree(r);
  }
};

resp_reader::resp_reader() : impl_(std::make_unique<impl>()) {}
resp_reader::~resp_reader() = default;

bool resp_reader::feed(const char* data, std::size_t n) {
  if (!impl_->r || redisReaderFeed(impl_->r, data, n) != REDIS_OK) failed_ = true;
  return !failed_;
}

std::optional<redis_value> resp_reader::next() {
  if (failed_ || !impl_->r) return std::nullopt;
  void* reply = nullptr;
  if (redisReaderGetReply(impl_->r, &reply) != REDIS_OK) {
    failed_ = true;
    return std::nullopt;
  }
  if (!reply) return std::nullopt;
  auto v = copy_reply(static_cast<redisReply*>(reply));
  freeReplyObject(reply);
  return v;
}

redis_connection::redis_connection(asio::any_io_executor ex, asio::ssl::context* tls)
    : ex_(std::move(ex)), tls_ctx_(tls), reader_(std::make_unique<resp_reader>()), buf_(read_chunk) {}

redis_connection::~redis_connection() = default;

bool redis_connection::is_open() const {
  if (tls_) return tls_->next_layer().socket().is_open();
  return plain_ && plain_->socket().is_open();
}

void redis_connection::close() {
  boost::system::error_code ignored;
  if (tls_) tls_->next_layer().socket().close(ignored);
  if (plain_) plain_->socket().close(ignored);
  tls_.reset();
  plain_.reset();
  reader_ = std::make_unique<resp_reader>();
}

asio::awaitable<boost::system::error_code> redis_connection::connect(const config::redis_url& url,
                                                                     time_point deadline) {
  close();
  tcp::resolver resolver(ex_);
  // A named string, not a temporary inside the co_await: GCC 12 may destroy such temporaries
  // twice (the crash session.cpp's tunnel code hit).
  const std::string port = std::to_string(url.server.port);
  auto [rec, endpoints] = co_await resolver.async_resolve(url.server.host, port, use_tuple);
  if (rec) co_return rec;
  beast::tcp_stream stream(ex_);
  stream.expires_at(deadline);
  auto [cec, ep] = co_await stream.async_connect(endpoints, use_tuple);
  if (cec) co_return cec;
  stream.socket().set_option(tcp::no_delay(true));
  if (!url.tls) {
    plain_ = std::make_unique<beast::tcp_stream>(std::move(stream));
    co_return boost::system::error_code{};
  }
  if (!tls_ctx_) co_return asio::error::no_protocol_option;
  auto s = std::make_unique<asio::ssl::stream<beast::tcp_stream>>(std::move(stream), *tls_ctx_);
  // SNI and a certificate for the name we dialled (RFC 6125), as for Okta itself.
  if (!SSL_set_tlsext_host_name(s->native_handle(), url.server.host.c_str()))
    co_return asio::error::invalid_argument;
  s->set_verify_callback(asio::ssl::host_name_verification(url.server.host));
  s->next_layer().expires_at(deadline);
  auto [hec] = co_await s->async_handshake(asio::ssl::stream_base::client, use_tuple);
  if (hec) co_return hec;
  tls_ = std::move(s);
  co_return boost::system::error_code{};
}

asio::awaitable<boost::system::error_code> redis_connection::write_all(const std::string& bytes,
                                                                       time_point deadline) {
  if (tls_) {
    tls_->next_layer().expires_at(deadline);
    auto [ec, n] = co_await asio::async_write(*tls_, asio::buffer(bytes), use_tuple);
    co_return ec;
  }
  plain_->expires_at(deadline);
  auto [ec, n] = co_await asio::async_write(*plain_, asio::buffer(bytes), use_tuple);
  co_return ec;
}

asio::awaitable<boost::system::error_code> redis_connection::read_some(std::size_t& n, time_point deadline) {
  if (tls_) {
    tls_->next_layer().expires_at(deadline);
    auto [ec, got] = co_await tls_->async_read_some(asio::buffer(buf_), use_tuple);
    n = got;
    co_return ec;
  }
  plain_->expires_at(deadline);
  auto [ec, got] = co_await plain_->async_read_some(asio::buffer(buf_), use_tuple);
  n = got;
  co_return ec;
}

asio::awaitable<boost::system::error_code> redis_connection::exec(const std::vector<std::string>& commands,
                                                                  std::vector<redis_value>& replies,
                                                                  time_point deadline) {
  replies.clear();
  if (!is_open()) co_return asio::error::not_connected;
  std::string out;
  for (const auto& c : commands) out += c;
  if (auto ec = co_await write_all(out, deadline)) {
    close();
    co_return ec;
  }
  while (replies.size() < commands.size()) {
    while (auto v = reader_->next()) {
      replies.push_back(std::move(*v));
      if (replies.size() == commands.size()) break;
    }
    if (reader_->failed()) {
      close();
      co_return asio::error::invalid_argument;
    }
    if (replies.size() == commands.size()) break;
    std::size_t n = 0;
    if (auto ec = co_await read_some(n, deadline)) {
      close();
      co_return ec;
    }
    reader_->feed(buf_.data(), n);
  }
  co_return boost::system::error_code{};
}

}  // namespace okta_sidecar::fleet
