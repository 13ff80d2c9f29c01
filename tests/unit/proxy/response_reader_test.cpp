#include "okta_sidecar/proxy/response_reader.hpp"

#include <gtest/gtest.h>

#include <boost/beast/http/error.hpp>
#include <string>
#include <string_view>

namespace okta_sidecar::proxy {
namespace {

namespace bhttp = boost::beast::http;

// Feeds `wire` to the reader in pieces of `step` bytes, as reads from a socket would; returns
// the bytes it did not take.
std::string feed(response_reader& r, std::string_view wire, std::size_t step, boost::system::error_code& ec) {
  std::string pending;
  while (!wire.empty() || !pending.empty()) {
    const std::size_t n = std::min(step, wire.size());
    pending.append(wire.substr(0, n));
    wire.remove_prefix(n);
    const std::size_t used = r.put(boost::asio::buffer(pending), ec);
    pending.erase(0, used);
    if (ec == bhttp::error::need_more) {
      ec = {};
      if (wire.empty()) break;
      continue;
    }
    if (ec || r.is_done() || (used == 0 && wire.empty())) break;
  }
  return pending + std::string(wire);
}

TEST(ResponseReader, KeepsTheHeadFlatAcrossPiecesAndGrowth) {
  // A head longer than the reader's first reservation: the views must follow the text's move.
  std::string wire = "HTTP/1.1 200 Fine\r\nX-Rate-Limit-Limit: 600\r\n";
  for (int i = 0; i < 40; ++i) wire += "X-Filler-" + std::to_string(i) + ": " + std::string(40, 'a') + "\r\n";
  wire += "x-okta-request-id: abc\r\nContent-Length: 3\r\n\r\nxyz";
  for (std::size_t step : {1u, 7u, 4096u}) {
    response_reader r;
    r.body_limit(boost::none);
    std::string body(8, '\0');
    r.body_into(body.data(), body.size());
    boost::system::error_code ec;
    feed(r, wire, step, ec);
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(r.is_done());
    EXPECT_EQ(r.status(), 200u);
    EXPECT_EQ(r.reason(), "Fine");
    EXPECT_EQ(r.version(), 11u);
    ASSERT_EQ(r.fields().size(), 43u);
    EXPECT_EQ(r.fields()[0].first, "X-Rate-Limit-Limit");
    EXPECT_EQ(r.fields()[0].second, "600");
    EXPECT_EQ(r.fields()[40].second, std::string(40, 'a'));
    EXPECT_EQ(r.find("X-Okta-Request-Id").value_or(""), "abc");
    EXPECT_FALSE(r.find("X-Missing").has_value());
    EXPECT_EQ(body.size() - r.body_room(), 3u);
    EXPECT_EQ(body.substr(0, 3), "xyz");
  }
}

TEST(ResponseReader, StopsWhenTheBodyBufferIsFull) {
  response_reader r;
  r.body_limit(boost::none);
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
  boost::system::error_code ec;
  std::size_t used = r.put(boost::asio::buffer(wire), ec);
  ASSERT_TRUE(r.is_header_done());
  char piece[4];
  r.body_into(piece, sizeof piece);
  used += r.put(boost::asio::buffer(wire.data() + used, wire.size() - used), ec);
  EXPECT_EQ(ec, bhttp::error::need_buffer);
  EXPECT_EQ(r.body_room(), 0u);
  EXPECT_EQ(std::string_view(piece, 4), "0123");
  EXPECT_FALSE(r.is_done());
  // Without a buffer the reader takes nothing.
  response_reader bare;
  bare.body_limit(boost::none);
  ec = {};
  const std::size_t head = bare.put(boost::asio::buffer(wire), ec);
  ec = {};
  EXPECT_EQ(bare.put(boost::asio::buffer(wire.data() + head, wire.size() - head), ec), 0u);
  EXPECT_EQ(ec, bhttp::error::need_buffer);
}

TEST(ResponseReader, DecodesChunksAndLeavesTrailersOut) {
  response_reader r;
  r.body_limit(boost::none);
  std::string body;
  r.body_to(body, 100);
  const std::string wire =
      "HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
  boost::system::error_code ec;
  const std::string rest = feed(r, wire, 3, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(r.is_done());
  EXPECT_TRUE(rest.empty());
  EXPECT_TRUE(r.chunked());
  EXPECT_EQ(body, "hello world");
  ASSERT_EQ(r.fields().size(), 1u);
  EXPECT_FALSE(r.find("X-Trailer").has_value());
}

TEST(ResponseReader, AWholeBodyHasALimit) {
  for (const std::string wire : {"HTTP/1.1 401 Unauthorized\r\nContent-Length: 11\r\n\r\nhello world",
                                 "HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"}) {
    response_reader r;
    r.body_limit(boost::none);
    std::string body;
    r.body_to(body, 10);
    boost::system::error_code ec;
    feed(r, wire, wire.size(), ec);
    EXPECT_EQ(ec, bhttp::error::body_limit) << wire;
    EXPECT_LE(body.size(), 10u);
  }
  // At the limit exactly, all of it.
  response_reader r;
  r.body_limit(boost::none);
  std::string body;
  r.body_to(body, 11);
  boost::system::error_code ec;
  feed(r, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 11\r\n\r\nhello world", 64, ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(body, "hello world");
}

TEST(ResponseReader, AnInterimResponseEndsAtItsHead) {
  response_reader r;
  r.body_limit(boost::none);
  const std::string wire =
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n";
  boost::system::error_code ec;
  const std::size_t used = r.put(boost::asio::buffer(wire), ec);
  ASSERT_FALSE(ec);
  EXPECT_TRUE(r.is_done());
  EXPECT_EQ(r.status(), 103u);
  EXPECT_EQ(r.find("link").value_or(""), "</a.css>; rel=preload");
  EXPECT_EQ(wire.substr(used), "HTTP/1.1 200 OK\r\n");
}

TEST(ResponseReader, TheHeaderLimitHolds) {
  response_reader r;
  r.header_limit(64);
  const std::string wire = "HTTP/1.1 200 OK\r\nX-Big: " + std::string(100, 'b') + "\r\n\r\n";
  boost::system::error_code ec;
  r.put(boost::asio::buffer(wire), ec);
  EXPECT_EQ(ec, bhttp::error::header_limit);
}

}  // namespace
}  // namespace okta_sidecar::proxy
