// Fuzzes proxy::response_reader, the parser of the upstream's responses: any bytes, in pieces of
// any size, never crash it or make it read or write outside what it was given; what it accepts
// is well-formed (a status, token names, values without CR or LF, a body no longer than its
// framing), and a head it accepted reads back the same when written out again.
// Input: one byte of settings (piece size, whole or streamed body), then the response bytes.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "okta_sidecar/proxy/response_reader.hpp"

namespace {

void require(bool condition) {
  if (!condition) __builtin_trap();
}

namespace bhttp = boost::beast::http;
using okta_sidecar::proxy::response_reader;

// Feeds `in` in pieces of `step` bytes; the body goes to `body` (whole) or through a small
// buffer lent again and again (streamed). Returns the first error other than need_more.
boost::system::error_code feed(response_reader& r, std::string_view in, std::size_t step, bool whole,
                               std::string& body) {
  char piece[37];
  std::string pending;
  boost::system::error_code ec;
  if (whole) r.body_to(body, 1024);
  while (!r.is_done()) {
    const std::size_t n = std::min(step, in.size());
    pending.append(in.substr(0, n));
    in.remove_prefix(n);
    const bool lent = !whole && r.is_header_done();
    if (lent) r.body_into(piece, sizeof piece);
    const std::size_t used = r.put(boost::asio::buffer(pending), ec);
    require(used <= pending.size());
    if (lent) body.append(piece, sizeof piece - r.body_room());
    pending.erase(0, used);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec == bhttp::error::need_more) {
      ec = {};
      if (in.empty()) break;
      continue;
    }
    if (ec) return ec;
    if (in.empty() && used == 0) break;
  }
  return ec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 64;
  const bool whole = (data[0] & 0x80) != 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  response_reader r;
  r.header_limit(2048);
  std::string body;
  const auto ec = feed(r, in, step, whole, body);
  require(body.size() <= in.size());
  if (!r.is_header_done()) return 0;
  require(r.status() >= 100 && r.status() <= 999);
  require(r.version() == 10 || r.version() == 11);
  std::string again = r.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  again += std::to_string(r.status());
  again += ' ';
  again += r.reason();
  again += "\r\n";
  for (const auto& [name, value] : r.fields()) {
    require(!name.empty() && name.find_first_of(":\r\n \t") == std::string_view::npos);
    require(value.find_first_of("\r\n") == std::string_view::npos);
    again.append(name).append(": ").append(value).append("\r\n");
  }
  again += "\r\n";
  if (!ec && r.is_done() && r.content_length() && !r.chunked() && !r.need_eof() && r.status() >= 200 &&
      r.status() != 204 && r.status() != 304) {
    require(body.size() == *r.content_length());
  }
  // The head once more, as the relay would write it out: the same status and fields.
  response_reader back;
  back.header_limit(1 << 20);
  back.skip(true);
  boost::system::error_code bec;
  require(back.put(boost::asio::buffer(again), bec) == again.size() && !bec);
  require(back.status() == r.status() && back.reason() == r.reason() &&
          back.fields().size() == r.fields().size());
  for (std::size_t i = 0; i < r.fields().size(); ++i) require(back.fields()[i] == r.fields()[i]);
  return 0;
}
