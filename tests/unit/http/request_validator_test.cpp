#include "okta_sidecar/http/request_validator.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace okta_sidecar::http {
namespace {

using fields = std::vector<std::pair<std::string, std::string>>;

struct vcase {
  const char* name;
  std::string method;
  std::string target;
  unsigned version;
  fields headers;
  verdict_code code;
  framing_kind kind = framing_kind::none;
  std::uint64_t length = 0;
};

std::ostream& operator<<(std::ostream& os, const vcase& c) { return os << c.name; }

validation run(const std::string& method, const std::string& target, unsigned version, const fields& headers,
               const limits& lim = {}) {
  std::vector<header_view> views;
  for (const auto& [n, v] : headers) views.emplace_back(n, v);
  return validate_request(method, target, version, views, lim);
}

const fields host{{"Host", "acme.okta.com"}};
fields with_host(fields extra) {
  fields f = host;
  f.insert(f.end(), extra.begin(), extra.end());
  return f;
}

class ValidateRequest : public ::testing::TestWithParam<vcase> {};

TEST_P(ValidateRequest, Verdict) {
  const auto& c = GetParam();
  const auto v = run(c.method, c.target, c.version, c.headers);
  EXPECT_EQ(v.code, c.code) << v.detail;
  if (c.code == verdict_code::ok) {
    EXPECT_EQ(v.body.kind, c.kind);
    EXPECT_EQ(v.body.length, c.length);
    EXPECT_TRUE(v.detail.empty());
  } else {
    EXPECT_FALSE(v.detail.empty());
  }
}

constexpr auto ok = verdict_code::ok;
constexpr auto bad = verdict_code::bad_request;
constexpr auto too_large = verdict_code::payload_too_large;
constexpr auto cl = framing_kind::content_length;
constexpr auto chunked = framing_kind::chunked;

INSTANTIATE_TEST_SUITE_P(
    Framing, ValidateRequest,
    ::testing::Values(
        vcase{"PlainGet", "GET", "/api/v1/users?limit=200", 11, host, ok},
        vcase{"ContentLength", "POST", "/api/v1/users", 11, with_host({{"Content-Length", "42"}}), ok, cl,
              42},
        vcase{"ContentLengthZero", "POST", "/x", 11, with_host({{"Content-Length", "0"}}), ok, cl, 0},
        vcase{"ContentLengthWithOws", "POST", "/x", 11, with_host({{"Content-Length", " 7\t"}}), ok, cl, 7},
        vcase{"Chunked", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked"}}), ok, chunked},
        vcase{"ChunkedUpperCase", "POST", "/x", 11, with_host({{"transfer-encoding", "CHUNKED"}}), ok,
              chunked},
        vcase{"ChunkedTrailingOws", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked "}}), ok,
              chunked},
        vcase{"ChunkedTrailingTab", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked\t"}}), ok,
              chunked},
        vcase{"ChunkedLeadingOws", "POST", "/x", 11, with_host({{"Transfer-Encoding", " chunked"}}), ok,
              chunked},
        vcase{"ClAndTe", "POST", "/x", 11,
              with_host({{"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}}), bad},
        vcase{"TeAndCl", "POST", "/x", 11,
              with_host({{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}}), bad},
        vcase{"ClTwiceDiffering", "POST", "/x", 11,
              with_host({{"Content-Length", "5"}, {"Content-Length", "6"}}), bad},
        vcase{"ClTwiceIdentical", "POST", "/x", 11,
              with_host({{"Content-Length", "5"}, {"Content-Length", "5"}}), bad},
        vcase{"ClListDiffering", "POST", "/x", 11, with_host({{"Content-Length", "5, 6"}}), bad},
        vcase{"ClListIdentical", "POST", "/x", 11, with_host({{"Content-Length", "5,5"}}), bad},
        vcase{"ClPlus", "POST", "/x", 11, with_host({{"Content-Length", "+5"}}), bad},
        vcase{"ClMinus", "POST", "/x", 11, with_host({{"Content-Length", "-1"}}), bad},
        vcase{"ClLeadingZeros", "POST", "/x", 11, with_host({{"Content-Length", "005"}}), bad},
        vcase{"ClHex", "POST", "/x", 11, with_host({{"Content-Length", "0x10"}}), bad},
        vcase{"ClEmpty", "POST", "/x", 11, with_host({{"Content-Length", ""}}), bad},
        vcase{"ClInnerSpace", "POST", "/x", 11, with_host({{"Content-Length", "1 0"}}), bad},
        vcase{"ClExponent", "POST", "/x", 11, with_host({{"Content-Length", "1e3"}}), bad},
        vcase{"ClDecimalPoint", "POST", "/x", 11, with_host({{"Content-Length", "5.0"}}), bad},
        vcase{"ClAtBodyLimit", "POST", "/x", 11, with_host({{"Content-Length", "67108864"}}), ok, cl,
              67108864},
        vcase{"ClOverBodyLimit", "POST", "/x", 11, with_host({{"Content-Length", "67108865"}}), too_large},
        vcase{"ClUint64Overflow", "POST", "/x", 11,
              with_host({{"Content-Length", "99999999999999999999999"}}), too_large},
        vcase{"TeGzip", "POST", "/x", 11, with_host({{"Transfer-Encoding", "gzip"}}), bad},
        vcase{"TeGzipChunked", "POST", "/x", 11, with_host({{"Transfer-Encoding", "gzip, chunked"}}), bad},
        vcase{"TeChunkedGzip", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked, gzip"}}), bad},
        vcase{"TeChunkedChunked", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked, chunked"}}),
              bad},
        vcase{"TeTwice", "POST", "/x", 11,
              with_host({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}), bad},
        vcase{"TeIdentity", "POST", "/x", 11, with_host({{"Transfer-Encoding", "identity"}}), bad},
        vcase{"TeEmpty", "POST", "/x", 11, with_host({{"Transfer-Encoding", ""}}), bad},
        vcase{"TeChunkedWithParam", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked;q=1"}}), bad},
        vcase{"TeChunkedTrailingComma", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked,"}}),
              bad},
        vcase{"TeQuotedChunked", "POST", "/x", 11, with_host({{"Transfer-Encoding", "\"chunked\""}}), bad},
        vcase{"TeChunkedSuffix", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunkedx"}}), bad},
        vcase{"TeSplitWord", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunk ed"}}), bad},
        vcase{"TeChunkedVerticalTab", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked\v"}}), bad},
        vcase{"TeChunkedObsText", "POST", "/x", 11, with_host({{"Transfer-Encoding", "chunked\xa0"}}), bad},
        vcase{"TeInHttp10", "POST", "/x", 10, {{"Transfer-Encoding", "chunked"}}, bad},
        vcase{"ConnectWithBody", "CONNECT", "acme.okta.com:443", 11, with_host({{"Content-Length", "3"}}),
              bad},
        vcase{"ConnectWithZeroLength", "CONNECT", "acme.okta.com:443", 11,
              with_host({{"Content-Length", "0"}}), ok, cl, 0},
        vcase{"ConnectChunked", "CONNECT", "acme.okta.com:443", 11,
              with_host({{"Transfer-Encoding", "chunked"}}), bad}),
    [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    Syntax, ValidateRequest,
    ::testing::Values(
        vcase{"ObsFoldInValue", "GET", "/x", 11, with_host({{"X-A", "one\r\n two"}}), bad},
        vcase{"ObsFoldTabInValue", "GET", "/x", 11, with_host({{"X-A", "one\n\ttwo"}}), bad},
        vcase{"ObsFoldAsOwnField", "GET", "/x", 11, with_host({{" Transfer-Encoding", "chunked"}}), bad},
        vcase{"BareCr", "GET", "/x", 11, with_host({{"X-A", "a\rb"}}), bad},
        vcase{"BareLf", "GET", "/x", 11, with_host({{"X-A", "a\nb"}}), bad},
        vcase{"NulInValue", "GET", "/x", 11, with_host({{"X-A", std::string("a\0b", 3)}}), bad},
        vcase{"CtlInValue", "GET", "/x", 11, with_host({{"X-A", "a\x01"}}), bad},
        vcase{"DelInValue", "GET", "/x", 11, with_host({{"X-A", "a\x7f"}}), bad},
        vcase{"TabInValueAllowed", "GET", "/x", 11, with_host({{"X-A", "a\tb"}}), ok},
        vcase{"ObsTextInValueAllowed", "GET", "/x", 11, with_host({{"X-A", "caf\xc3\xa9"}}), ok},
        vcase{"NulInName", "GET", "/x", 11, with_host({{std::string("X\0A", 3), "1"}}), bad},
        vcase{"SpaceInName", "GET", "/x", 11, with_host({{"Content Length", "1"}}), bad},
        vcase{"TrailingSpaceInName", "POST", "/x", 11, with_host({{"Content-Length ", "1"}}), bad},
        vcase{"ColonInName", "GET", "/x", 11, with_host({{"X:A", "1"}}), bad},
        vcase{"EmptyName", "GET", "/x", 11, with_host({{"", "1"}}), bad},
        vcase{"NonAsciiName", "GET", "/x", 11, with_host({{"X-\xc3\xa9", "1"}}), bad},
        vcase{"CrInName", "GET", "/x", 11, with_host({{"X-A\r", "1"}}), bad},
        vcase{"MissingHost11", "GET", "/x", 11, {}, bad},
        vcase{"MissingHost10Allowed", "GET", "/x", 10, {}, ok},
        vcase{"DoubleHost", "GET", "/x", 11, {{"Host", "a.okta.com"}, {"host", "a.okta.com"}}, bad},
        vcase{"DoubleHostIn10", "GET", "/x", 10, {{"Host", "a.okta.com"}, {"Host", "b.okta.com"}}, bad},
        vcase{"EmptyHostAllowed", "GET", "/x", 11, {{"Host", ""}}, ok},
        vcase{"HostWithPort", "GET", "/x", 11, {{"Host", "a.okta.com:8443"}}, ok},
        vcase{"HostIpv6", "GET", "/x", 11, {{"Host", "[::1]:8080"}}, ok},
        vcase{"HostUserinfo", "GET", "/x", 11, {{"Host", "user@a.okta.com"}}, bad},
        vcase{"HostBadPort", "GET", "/x", 11, {{"Host", "a.okta.com:99999"}}, bad},
        vcase{"HostSpace", "GET", "/x", 11, {{"Host", "a.okta.com evil.com"}}, bad},
        vcase{"HostList", "GET", "/x", 11, {{"Host", "a.okta.com, evil.com"}}, bad},
        vcase{"MethodLowerCaseToken", "get", "/x", 11, host, ok},
        vcase{"MethodExtension", "PATCH", "/x", 11, host, ok}, vcase{"MethodEmpty", "", "/x", 11, host, bad},
        vcase{"MethodWithSpace", "G ET", "/x", 11, host, bad},
        vcase{"MethodWithSlash", "GET/", "/x", 11, host, bad},
        vcase{"MethodNonAscii", "G\xc9T", "/x", 11, host, bad}, vcase{"Http09", "GET", "/x", 9, host, bad},
        vcase{"Http20", "GET", "/x", 20, host, bad}),
    [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    Targets, ValidateRequest,
    ::testing::Values(vcase{"OriginForm", "GET", "/api/v1/users/00u1%20x?q=a+b", 11, host, ok},
                      vcase{"OriginFormRoot", "GET", "/", 11, host, ok},
                      vcase{"AbsoluteFormHttp", "GET", "http://acme.okta.com/api/v1/users", 11, host, ok},
                      vcase{"AbsoluteFormHttps", "GET", "https://acme.okta.com:8443/x", 11, host, ok},
                      vcase{"AbsoluteFormUserinfo", "GET", "http://u:p@acme.okta.com/", 11, host, bad},
                      vcase{"AbsoluteFormFtp", "GET", "ftp://acme.okta.com/", 11, host, bad},
                      vcase{"AuthorityFormForGet", "GET", "acme.okta.com:443", 11, host, bad},
                      vcase{"ConnectAuthority", "CONNECT", "acme.okta.com:443", 11, host, ok},
                      vcase{"ConnectIpv6", "CONNECT", "[2001:db8::1]:443", 11, host, ok},
                      vcase{"ConnectWithoutPort", "CONNECT", "acme.okta.com", 11, host, bad},
                      vcase{"ConnectOriginForm", "CONNECT", "/x", 11, host, bad},
                      vcase{"ConnectAbsoluteForm", "CONNECT", "https://acme.okta.com:443/", 11, host, bad},
                      vcase{"AsteriskOptions", "OPTIONS", "*", 11, host, ok},
                      vcase{"AsteriskGet", "GET", "*", 11, host, bad},
                      vcase{"EmptyTarget", "GET", "", 11, host, bad},
                      vcase{"TargetWithSpace", "GET", "/a b", 11, host, bad},
                      vcase{"TargetWithFragment", "GET", "/a#b", 11, host, bad},
                      vcase{"TargetWithNul", "GET", std::string("/a\0b", 4), 11, host, bad},
                      vcase{"TargetWithCr", "GET", "/a\rb", 11, host, bad},
                      vcase{"TargetNonAscii", "GET", "/caf\xc3\xa9", 11, host, bad},
                      vcase{"TargetBadPercent", "GET", "/a%zz", 11, host, bad},
                      vcase{"TargetTruncatedPercent", "GET", "/a%4", 11, host, bad}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ValidateRequest, KeepsTheParsedHostHeader) {
  const auto v = run("GET", "http://acme.okta.com/x", 11, {{"Host", " ACME.okta.com:8443 "}});
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v.host);
  EXPECT_EQ(v.host->host, "acme.okta.com");
  EXPECT_EQ(v.host->port, 8443);
  EXPECT_FALSE(run("GET", "/x", 10, {}).host);               // HTTP/1.0 without Host
  EXPECT_FALSE(run("GET", "/x", 11, {{"Host", " "}}).host);  // empty after OWS: nothing parsed
}

// A Host that repeats the target's authority is taken from the target's parse: the same answer
// as parsing the Host itself, port named or not.
TEST(ValidateRequest, HostRepeatingTheAuthorityReadsAsItself) {
  for (const std::string authority : {"acme.okta.com", "acme.okta.com:8443", "ACME.Okta.com:80",
                                      "[2001:db8::1]", "[2001:DB8::1]:8080", "10.0.0.1:443"}) {
    const auto v = run("GET", "https://" + authority + "/x", 11, {{"Host", authority}});
    ASSERT_TRUE(v.ok()) << authority;
    ASSERT_TRUE(v.host) << authority;
    EXPECT_EQ(*v.host, *parse_host_header(authority)) << authority;
  }
  // A Host that differs from it is its own (the routing compares the two).
  const auto v = run("GET", "http://acme.okta.com:8080/x", 11, {{"Host", "other.okta.com"}});
  ASSERT_TRUE(v.host);
  EXPECT_EQ(v.host->host, "other.okta.com");
  EXPECT_FALSE(v.host->port);
}
TEST(ValidateRequestLimits, HeaderCountBoundary) {
  limits lim;
  lim.max_header_count = 3;
  fields f = with_host({{"A", "1"}, {"B", "2"}});
  EXPECT_EQ(run("GET", "/", 11, f, lim).code, verdict_code::ok);
  f.emplace_back("C", "3");
  const auto v = run("GET", "/", 11, f, lim);
  EXPECT_EQ(v.code, verdict_code::headers_too_large);
  EXPECT_EQ(v.detail, "too many header fields");
}

TEST(ValidateRequestLimits, HeadBytesBoundary) {
  // "GET / HTTP/1.1" (14) + CRLF, "Host: h" (7) + CRLF, "X: <v>" + CRLF, final CRLF.
  const std::uint64_t fixed = 14 + 2 + 7 + 2 + 3 + 2 + 2;
  limits lim;
  lim.max_header_bytes = fixed + 100;
  EXPECT_EQ(run("GET", "/", 11, {{"Host", "h"}, {"X", std::string(100, 'v')}}, lim).code, verdict_code::ok);
  EXPECT_EQ(run("GET", "/", 11, {{"Host", "h"}, {"X", std::string(101, 'v')}}, lim).code,
            verdict_code::headers_too_large);
}

TEST(ValidateRequestLimits, RequestLineBoundary) {
  limits lim;
  lim.max_request_line = 100;
  // "GET " + target + " HTTP/1.1" = 13 + target length.
  EXPECT_EQ(run("GET", "/" + std::string(86, 'a'), 11, host, lim).code, verdict_code::ok);
  const auto v = run("GET", "/" + std::string(87, 'a'), 11, host, lim);
  EXPECT_EQ(v.code, verdict_code::headers_too_large);
  EXPECT_EQ(v.detail, "request line too long");
}

TEST(ValidateRequestLimits, BodyLimitIsConfigurable) {
  limits lim;
  lim.max_body_bytes = 10;
  EXPECT_EQ(run("POST", "/", 11, with_host({{"Content-Length", "10"}}), lim).code, verdict_code::ok);
  EXPECT_EQ(run("POST", "/", 11, with_host({{"Content-Length", "11"}}), lim).code,
            verdict_code::payload_too_large);
}

TEST(ValidateRequestLimits, SmugglingBeatsSizeVerdict) {
  // A request that is both oversized and ambiguous is reported as ambiguous (400).
  limits lim;
  lim.max_body_bytes = 10;
  EXPECT_EQ(
      run("POST", "/", 11, with_host({{"Content-Length", "11"}, {"Transfer-Encoding", "chunked"}}), lim).code,
      verdict_code::bad_request);
}

TEST(ValidateRequestDetail, NeverContainsHeaderValues) {
  const std::string secret = "SSWS 00secretTOKENvalue";
  for (const fields& f :
       {with_host({{"Authorization", secret + "\r\n x"}}), with_host({{"Content-Length", secret}}),
        with_host({{"Transfer-Encoding", secret}}), fields{{"Host", secret}}}) {
    const auto v = run("GET", "/", 11, f);
    ASSERT_NE(v.code, verdict_code::ok);
    EXPECT_EQ(v.detail.find("secret"), std::string::npos) << v.detail;
  }
}

TEST(ValidateRequestForm, ReportsTheTargetForm) {
  EXPECT_EQ(run("GET", "/", 11, host).form, target_form::origin);
  EXPECT_EQ(run("GET", "http://a.okta.com/", 11, host).form, target_form::absolute);
  EXPECT_EQ(run("CONNECT", "a.okta.com:443", 11, host).form, target_form::authority);
  EXPECT_EQ(run("OPTIONS", "*", 11, host).form, target_form::asterisk);
}

struct cl_case {
  const char* text;
  std::optional<std::uint64_t> value;
};

TEST(ParseContentLength, Table) {
  const cl_case cases[] = {
      {"0", 0},
      {"1", 1},
      {"18446744073709551615", 18446744073709551615ull},
      {"18446744073709551616", UINT64_MAX},
      {"", std::nullopt},
      {"00", std::nullopt},
      {"01", std::nullopt},
      {"+1", std::nullopt},
      {"-0", std::nullopt},
      {"0x1", std::nullopt},
      {" 1", std::nullopt},
      {"1 ", std::nullopt},
      {"1,1", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_content_length(c.text), c.value) << c.text;
}

}  // namespace
}  // namespace okta_sidecar::http

namespace okta_sidecar::http {
namespace {

TEST(ExpectsContinue, OnlyHttp11AndOnly100Continue) {
  EXPECT_TRUE(expects_continue(11, "100-continue"));
  EXPECT_TRUE(expects_continue(11, " 100-Continue\t"));
  // RFC 9110 section 10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored.
  EXPECT_FALSE(expects_continue(10, "100-continue"));
  EXPECT_FALSE(expects_continue(11, ""));
  EXPECT_FALSE(expects_continue(11, "200-ok"));
  EXPECT_FALSE(expects_continue(11, "100-continuex"));
}

TEST(BodyReadDeadline, IdleTimeoutButNeverPastTheRequestDeadline) {
  const time_point t0{};
  const auto idle = std::chrono::seconds(60);
  EXPECT_EQ(body_read_deadline(t0, idle, t0 + std::chrono::seconds(120)), t0 + idle);
  // A slow upload that keeps the idle timer fed still ends at the total deadline.
  EXPECT_EQ(body_read_deadline(t0 + std::chrono::seconds(100), idle, t0 + std::chrono::seconds(120)),
            t0 + std::chrono::seconds(120));
  EXPECT_EQ(body_read_deadline(t0 + std::chrono::seconds(130), idle, t0 + std::chrono::seconds(120)),
            t0 + std::chrono::seconds(120));
}

TEST(ScanRawHead, EndFoldOrMore) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(scan_raw_head(head, 0), raw_head::complete);
  EXPECT_EQ(scan_raw_head("GET / HTTP/1.1\nHost: a\n\n", 0), raw_head::complete);      // bare LF line ends
  EXPECT_EQ(scan_raw_head("GET / HTTP/1.1\r\nHost: a\r\n\r", 0), raw_head::complete);  // "\r\n\r": the end
  EXPECT_EQ(scan_raw_head("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0), raw_head::obs_fold);
  EXPECT_EQ(scan_raw_head("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", 0), raw_head::obs_fold);
  EXPECT_EQ(scan_raw_head("GET / HTTP/1.1\r\nHost: a\r\n", 0), raw_head::incomplete);  // the LF is last
  EXPECT_EQ(scan_raw_head("", 0), raw_head::incomplete);
  EXPECT_EQ(scan_raw_head("\n", 0), raw_head::incomplete);
  // Resumed where the last look stopped (its last byte, which may be a line feed): whatever
  // part came first, the head is found complete once, and never folded.
  for (std::size_t seen = 0; seen < head.size(); ++seen) {
    const std::string_view part(head.data(), seen);
    const auto first = scan_raw_head(part, 0);
    EXPECT_NE(first, raw_head::obs_fold) << seen;
    if (first == raw_head::complete) continue;
    EXPECT_EQ(scan_raw_head(head, part.empty() ? 0 : part.size() - 1), raw_head::complete) << seen;
  }
}

}  // namespace
}  // namespace okta_sidecar::http
