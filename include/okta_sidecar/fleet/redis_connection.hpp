#pragma once
// One connection to Redis, driven by Asio (never blocks an I/O thread): hiredis supplies only
// the RESP protocol (its command formatter and its reply reader, no sockets of its own). Every
// exchange is a pipeline: all commands are written at once and the replies read in order, with
// one deadline for the lot (beast::tcp_stream's timeouts close the socket when it passes).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/clock.hpp"
#include "okta_sidecar/config/syntax.hpp"

namespace okta_sidecar::fleet {

namespace asio = boost::asio;
namespace beast = boost::beast;

// A reply, copied out of hiredis's redisReply tree.
struct redis_value {
  enum class type { nil, integer, string, status, error, array };
  type kind = type::nil;
  long long integer = 0;
  std::string str;  // string, status, error
  std::vector<redis_value> elements;

  bool is_error() const { return kind == type::error; }
};

// RESP encoding of one command (hiredis redisFormatCommandArgv).
std::string format_command(std::span<const std::string_view> argv);
std::string format_command(std::initializer_list<std::string_view> argv);

// Incremental RESP parser (hiredis redisReader): feed bytes, pop complete replies.
class resp_reader {
 public:
  resp_reader();
  ~resp_reader();
  resp_reader(const resp_reader&) = delete;
  resp_reader& operator=(const resp_reader&) = delete;

  bool feed(const char* data, std::size_t n);
  // A complete reply, nullopt if more bytes are needed; sets `failed` on a protocol error.
  std::optional<redis_value> next();
  bool failed() const { return failed_; }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  bool failed_ = false;
};

// A plain or TLS connection to one Redis server.
class redis_connection {
 public:
  // `tls` must outlive the connection when the URL is rediss://.
  redis_connection(asio::any_io_executor ex, asio::ssl::context* tls);
  ~redis_connection();

  // Resolves, connects (and does the TLS handshake) before `deadline`.
  asio::awaitable<boost::system::error_code> connect(const config::redis_url& url, time_point deadline);
  // Writes every (formatted) command, then reads as many replies.
  asio::awaitable<boost::system::error_code> exec(const std::vector<std::string>& commands,
                                                  std::vector<redis_value>& replies, time_point deadline);
  void close();
  bool is_open() const;

 private:
  asio::awaitable<boost::system::error_code> write_all(const std::string& bytes, time_point deadline);
  asio::awaitable<boost::system::error_code> read_some(std::size_t& n, time_point deadline);

  asio::any_io_executor ex_;
  asio::ssl::context* tls_ctx_;
  std::unique_ptr<beast::tcp_stream> plain_;
  std::unique_ptr<asio::ssl::stream<beast::tcp_stream>> tls_;
  std::unique_ptr<resp_reader> reader_;
  std::vector<char> buf_;
};

}  // namespace okta_sidecar::fleet
