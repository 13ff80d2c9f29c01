#include "okta_sidecar/proxy/response_reader.hpp"

#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

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
  ec = {};
  const std::size_t head = bare.put(boost::asio::buffer(wire), ec);
  ec = {};
  EXPECT_EQ(bare.put(boost::asio::buffer(wire.data() + head, wire.size() - head), ec), 0u);
  EXPECT_EQ(ec, bhttp::error::need_buffer);
}

TEST(ResponseReader, DecodesChunksAndLeavesTrailersOut) {
  response_reader r;
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
    std::string body;
    r.body_to(body, 10);
    boost::system::error_code ec;
    feed(r, wire, wire.size(), ec);
    EXPECT_EQ(ec, bhttp::error::body_limit) << wire;
    EXPECT_LE(body.size(), 10u);
  }
  // At the limit exactly, all of it.
  response_reader r;
  std::string body;
  r.body_to(body, 11);
  boost::system::error_code ec;
  feed(r, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 11\r\n\r\nhello world", 64, ec);
  EXPECT_FALSE(ec);
  EXPECT_EQ(body, "hello world");
}

TEST(ResponseReader, AnInterimResponseEndsAtItsHead) {
  response_reader r;
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

  // The limit counts the whole head with its final empty line: a head of exactly the limit
  // passes, one byte more fails, whole or a byte at a time.
  const std::string head = "HTTP/1.1 204 No Content\r\nX-Pad: ";
  const std::string exact = head + std::string(64 - head.size() - 4, 'p') + "\r\n\r\n";
  ASSERT_EQ(exact.size(), 64u);
  for (std::size_t step : {1u, 64u}) {
    response_reader fits;
    fits.header_limit(64);
    feed(fits, exact, step, ec);
    EXPECT_FALSE(ec) << step;
    EXPECT_TRUE(fits.is_done()) << step;
    response_reader over;
    over.header_limit(64);
    feed(over, head + std::string(64 - head.size() - 3, 'p') + "\r\n\r\n", step, ec);
    EXPECT_EQ(ec, bhttp::error::header_limit) << step;
  }
}

TEST(ResponseReader, AReaderAfterAnotherStartsClean) {
  // Readers take their buffers from the thread's spares: the last one's fields must not show.
  {
    response_reader first;
    boost::system::error_code ec;
    first.put(boost::asio::buffer(std::string_view("HTTP/1.1 204 No\r\nX-First: 1\r\nX-Two: 2\r\n\r\n")), ec);
    ASSERT_FALSE(ec);
    ASSERT_EQ(first.fields().size(), 2u);
  }
  response_reader next;
  boost::system::error_code ec;
  next.put(boost::asio::buffer(std::string_view("HTTP/1.1 204 No\r\nX-Next: n\r\n\r\n")), ec);
  ASSERT_FALSE(ec);
  ASSERT_EQ(next.fields().size(), 1u);
  EXPECT_EQ(next.fields()[0].first, "X-Next");
  EXPECT_FALSE(next.find("X-First").has_value());
}

// Parses a whole response (body whole); returns the error of the first failing put.
boost::system::error_code parse(response_reader& r, std::string_view wire, std::string& body) {
  r.body_to(body, 1 << 20);
  boost::system::error_code ec;
  feed(r, wire, wire.size(), ec);
  if (!ec && !r.is_done()) ec = bhttp::error::need_more;
  return ec;
}

TEST(ResponseReader, FramingFollowsRfc9112) {
  struct framing {
    const char* wire;
    bool chunked;
    bool need_eof;
    const char* body;
  };
  for (const auto& f : std::initializer_list<framing>{
           {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab", false, false, "ab"},
           {"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab", false, false, "ab"},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
            "chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
            true, false, "ab"},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nab", false, true, "ab"},
           {"HTTP/1.1 200 OK\r\n\r\nab", false, true, "ab"},
           {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, false, ""},
           {"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", true, false, ""},
           {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, ""},
       }) {
    response_reader r;
    std::string body;
    boost::system::error_code ec = parse(r, f.wire, body);
    if (f.need_eof) {
      EXPECT_EQ(ec, bhttp::error::need_more) << f.wire;  // not done until the close
      r.put_eof(ec);
    }
    EXPECT_FALSE(ec) << f.wire << ": " << ec.message();
    EXPECT_TRUE(r.is_done()) << f.wire;
    EXPECT_EQ(r.chunked(), f.chunked) << f.wire;
    EXPECT_EQ(r.need_eof(), f.need_eof) << f.wire;
    EXPECT_EQ(body, f.body) << f.wire;
  }
}

TEST(ResponseReader, RefusesAResponseFramedTwoWaysOrBadly) {
  for (const auto& [wire, error] : std::initializer_list<std::pair<const char*, bhttp::error>>{
           {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            bhttp::error::bad_transfer_encoding},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
            bhttp::error::bad_transfer_encoding},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            bhttp::error::bad_transfer_encoding},
           {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            bhttp::error::multiple_content_length},
           {"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n", bhttp::error::multiple_content_length},
           {"HTTP/1.1 200 OK\r\nContent-Length: 2,,2\r\n\r\n", bhttp::error::bad_content_length},
           {"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n", bhttp::error::bad_content_length},
           {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            bhttp::error::bad_content_length},
           {"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", bhttp::error::bad_content_length},
           {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n 3\r\n\r\n", bhttp::error::bad_obs_fold},
           {"HTTP/1.1 200 OK\r\n X: folded first\r\n\r\n", bhttp::error::bad_obs_fold},
           {"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", bhttp::error::bad_field},
           {"HTTP/1.1 200 OK\r\n: x\r\n\r\n", bhttp::error::bad_field},
           {"HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n", bhttp::error::bad_value},
           {"HTTP/1.1 200 OK\r\nX\n: b\r\n\r\n", bhttp::error::bad_field},
           {"HTTP/1.1 200 OK\rX: b\r\n\r\n", bhttp::error::bad_reason},
           {"HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n", bhttp::error::bad_value},
           {"HTTP/2.0 200 OK\r\n\r\n", bhttp::error::bad_version},
           {"HTTP/1.1 20x OK\r\n\r\n", bhttp::error::bad_status},
           {"HTTP/1.1 099 OK\r\n\r\n", bhttp::error::bad_status},
           {"HTTP/1.1 200OK\r\n\r\n", bhttp::error::bad_status},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", bhttp::error::bad_chunk},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
            bhttp::error::bad_chunk},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 x\r\nab\r\n",
            bhttp::error::bad_chunk_extension},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", bhttp::error::bad_chunk},
           {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Trailer\r\n\r\n",
            bhttp::error::bad_field},
       }) {
    response_reader r;
    std::string body;
    EXPECT_EQ(parse(r, wire, body), error) << wire;
  }
}

TEST(ResponseReader, AcceptsWhatRealServersSend) {
  response_reader r;
  std::string body;
  const auto ec = parse(r,
                        "HTTP/1.0 200\r\nX-Folded: one\r\n\t two  \r\nConnection: Keep-Alive\r\nX-Empty:\r\n"
                        "X-Spaced: a  \r\n  b\r\n"
                        "X-Many: 1\r\n 2 \r\n\t3\r\nX-Late:\r\n   late\r\nX-After: after\r\n"
                        "X-Text: caf\xc3\xa9\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "2;name=value\r\nab\r\n0\r\nX-Trailer: t\r\n folded\r\n\r\n",
                        body);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(r.version(), 10u);
  EXPECT_EQ(r.status(), 200u);
  EXPECT_EQ(r.reason(), "");
  EXPECT_EQ(r.find("x-folded").value_or(""), "one two");
  EXPECT_EQ(r.find("X-Empty").value_or("missing"), "");
  EXPECT_EQ(r.find("X-Spaced").value_or(""), "a b");
  EXPECT_EQ(r.find("X-Many").value_or(""), "1 2 3");  // each fold a space, in place
  EXPECT_EQ(r.find("X-Late").value_or(""), "late");
  EXPECT_EQ(r.find("X-After").value_or(""), "after");
  EXPECT_EQ(r.find("X-Text").value_or(""), "caf\xc3\xa9");
  EXPECT_EQ(body, "ab");
  EXPECT_TRUE(r.keep_alive());
}

TEST(ResponseReader, ALaterMinorVersionIsReadAsHttp11) {
  response_reader r;
  std::string body;
  ASSERT_FALSE(parse(r, "HTTP/1.3 200 OK\r\nContent-Length: 0\r\n\r\n", body));
  EXPECT_EQ(r.version(), 11u);
}

TEST(ResponseReader, KeepAliveByVersionAndConnection) {
  for (const auto& [wire, keep] : std::initializer_list<std::pair<const char*, bool>>{
           {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true},
           {"HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n", false},
           {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
           {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", true},
       }) {
    response_reader r;
    std::string body;
    ASSERT_FALSE(parse(r, wire, body)) << wire;
    EXPECT_EQ(r.keep_alive(), keep) << wire;
  }
  // A body delimited by the close never leaves a connection to reuse.
  response_reader r;
  std::string body;
  parse(r, "HTTP/1.1 200 OK\r\n\r\nab", body);
  EXPECT_FALSE(r.keep_alive());
}

TEST(ResponseReader, BytesThatAreNoResponseFailAtOnce) {
  response_reader r;
  boost::system::error_code ec;
  EXPECT_EQ(r.put(boost::asio::buffer(std::string_view("HT")), ec), 0u);
  EXPECT_EQ(ec, bhttp::error::need_more);
  EXPECT_EQ(r.put(boost::asio::buffer(std::string_view("stray")), ec), 0u);
  EXPECT_EQ(ec, bhttp::error::bad_version);
}

TEST(ResponseReader, TrailersAreBoundedByTheHeaderLimit) {
  response_reader r;
  r.header_limit(1024);
  std::string body;
  r.body_to(body, 100);
  std::string wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n";
  for (int i = 0; i < 100; ++i) wire += "X-T" + std::to_string(i) + ": " + std::string(20, 'v') + "\r\n";
  boost::system::error_code ec;
  feed(r, wire, 16, ec);  // the trailers never end: the limit must stop them
  EXPECT_EQ(ec, bhttp::error::header_limit);
}

TEST(ResponseReader, AnEndBeforeTheFramingSaysIsATruncation) {
  for (const char* wire : {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
                           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"}) {
    response_reader r;
    std::string body;
    EXPECT_EQ(parse(r, wire, body), bhttp::error::need_more);
    boost::system::error_code ec;
    r.put_eof(ec);
    EXPECT_EQ(ec, bhttp::error::partial_message) << wire;
  }
}

TEST(ResponseReader, TheAnswerToHeadHasNoBody) {
  response_reader r;
  r.skip(true);
  std::string body;
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
  ASSERT_FALSE(parse(r, wire, body));
  EXPECT_TRUE(r.is_done());
  EXPECT_EQ(r.content_length().value_or(0), 1234u);
  EXPECT_TRUE(r.keep_alive());
}

}  // namespace
}  // namespace okta_sidecar::proxy
