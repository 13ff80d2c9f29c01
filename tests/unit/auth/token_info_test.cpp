#include "okta_sidecar/auth/token_info.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "jwt_builder.hpp"
#include "okta_sidecar/auth/sha256.hpp"

namespace okta_sidecar::auth {
namespace {

using test::b64url;
using test::jwt;

const std::string good_claims =
    R"({"ver":1,"jti":"AT.x","iss":"https://acme.okta.com","aud":"https://acme.okta.com",)"
    R"("iat":1700000000,"exp":1700003600,"cid":"0oa1abcdEFGH","uid":"00u1","sub":"alice@example.com",)"
    R"("scp":["okta.users.read","okta.groups.read"]})";

struct decode_case {
  std::string name;
  std::string value;
  credential_kind kind;
  std::string reason;
};

std::vector<decode_case> decode_cases() {
  const std::string good = jwt(good_claims);
  const std::string header = b64url(R"({"alg":"RS256"})");
  const std::string claims = b64url(good_claims);
  return {
      {"Absent", "", credential_kind::none, ""},
      {"OnlySpaces", "   \t ", credential_kind::none, ""},
      {"ValidJwt", "Bearer " + good, credential_kind::bearer_jwt, ""},
      {"LowercaseScheme", "bearer " + good, credential_kind::bearer_jwt, ""},
      {"SurroundingOws", "  Bearer " + good + "\t", credential_kind::bearer_jwt, ""},
      {"SeveralSpacesAfterScheme", "Bearer   " + good, credential_kind::bearer_jwt, ""},
      {"Opaque", "Bearer abcDEF123-_~+/=", credential_kind::bearer_opaque, ""},
      {"Ssws", "SSWS 00QCjAl4MlV-WPXM0HmjFx-vbGua", credential_kind::ssws, ""},
      {"SswsLowercase", "ssws 00QCjAl4MlV", credential_kind::ssws, ""},
      {"NoPrefixJwt", good, credential_kind::malformed, "missing_bearer_prefix"},
      {"NoPrefixJwtWithJunk", good + " trailing", credential_kind::malformed, "missing_bearer_prefix"},
      {"NoPrefixOpaque", "00QCjAl4MlV", credential_kind::malformed, "missing_bearer_prefix"},
      {"BasicScheme", "Basic dXNlcjpwYXNz", credential_kind::malformed, "unsupported_scheme"},
      {"TokenScheme", "Token abc", credential_kind::malformed, "unsupported_scheme"},
      {"BearerAlone", "Bearer", credential_kind::malformed, "empty_token"},
      {"BearerSpace", "Bearer   ", credential_kind::malformed, "empty_token"},
      {"SswsAlone", "SSWS", credential_kind::malformed, "empty_token"},
      {"DoubleBearer", "Bearer Bearer " + good, credential_kind::malformed, "duplicate_bearer_prefix"},
      {"DoubleQuoted", "Bearer \"" + good + "\"", credential_kind::malformed, "token_quoted"},
      {"SingleQuoted", "Bearer '" + good + "'", credential_kind::malformed, "token_quoted"},
      {"WholeValueQuoted", "\"Bearer " + good + "\"", credential_kind::malformed, "token_quoted"},
      {"QuotedSsws", "SSWS \"00abc\"", credential_kind::malformed, "token_quoted"},
      {"InnerSpace", "Bearer " + header + ". " + claims + ".sig", credential_kind::malformed,
       "token_whitespace"},
      {"TrailingNewline", "Bearer " + good + "\n", credential_kind::malformed, "token_whitespace"},
      {"NoPrefixWithNewline", good + "\r\nX", credential_kind::malformed, "token_whitespace"},
      {"BadCharacters", "Bearer abc$def", credential_kind::malformed, "token_invalid_characters"},
      {"EqualsInMiddle", "Bearer ab=cd", credential_kind::malformed, "token_invalid_characters"},
      {"TwoSegments", "Bearer " + header + "." + claims, credential_kind::malformed, "jwt_truncated"},
      {"EmptySignature", "Bearer " + header + "." + claims + ".", credential_kind::malformed,
       "jwt_truncated"},
      {"EmptyClaims", "Bearer " + header + "..sig", credential_kind::malformed, "jwt_truncated"},
      {"FiveSegmentsJwe", "Bearer a.b.c.d.e", credential_kind::malformed, "jwt_wrong_segment_count"},
      {"PlainBase64Alphabet", "Bearer " + header + "." + claims + "+/." + "sig", credential_kind::malformed,
       "jwt_bad_base64"},
      {"ImpossibleLength", "Bearer " + header + ".abcde.sig", credential_kind::malformed, "jwt_bad_base64"},
      {"ClaimsNotJson", "Bearer " + header + "." + b64url("hello world") + ".sig", credential_kind::malformed,
       "jwt_not_json"},
      {"ClaimsJsonArray", "Bearer " + header + "." + b64url("[1,2]") + ".sig", credential_kind::malformed,
       "jwt_not_json"},
      {"HeaderNotJson", "Bearer " + b64url("{alg") + "." + claims + ".sig", credential_kind::malformed,
       "jwt_not_json"},
      {"TooDeep", "Bearer " + header + "." + b64url(std::string(40, '[') + std::string(40, ']')) + ".sig",
       credential_kind::malformed, "jwt_not_json"},
      {"Huge", "Bearer " + std::string(max_authorization_bytes, 'a'), credential_kind::malformed,
       "token_too_large"},
  };
}

class DecodeTable : public ::testing::TestWithParam<decode_case> {};

TEST_P(DecodeTable, KindAndReason) {
  const decode_case& c = GetParam();
  const token_info info = inspect_authorization(c.value);
  EXPECT_EQ(info.kind, c.kind) << to_string(info.kind);
  EXPECT_EQ(info.malformed_reason, c.reason);
  // No digest given: nothing is fingerprinted (see KeyedFingerprint below).
  EXPECT_TRUE(info.fingerprint.empty());
}

INSTANTIATE_TEST_SUITE_P(Auth, DecodeTable, ::testing::ValuesIn(decode_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(InspectAuthorization, ReadsOktaClaims) {
  const token_info info = inspect_authorization("Bearer " + jwt(good_claims));
  ASSERT_EQ(info.kind, credential_kind::bearer_jwt);
  EXPECT_EQ(info.iss, "https://acme.okta.com");
  EXPECT_EQ(info.cid, "0oa1abcdEFGH");
  EXPECT_EQ(info.sub, "alice@example.com");
  EXPECT_EQ(info.exp, 1700003600);
  EXPECT_EQ(info.iat, 1700000000);
  EXPECT_FALSE(info.nbf.has_value());
  EXPECT_EQ(info.aud, std::vector<std::string>{"https://acme.okta.com"});
  EXPECT_EQ(info.scp, (std::vector<std::string>{"okta.users.read", "okta.groups.read"}));
}

TEST(InspectAuthorization, MissingClaimsStayEmpty) {
  const token_info info = inspect_authorization("Bearer " + jwt("{}"));
  ASSERT_EQ(info.kind, credential_kind::bearer_jwt);
  EXPECT_FALSE(info.exp || info.iat || info.nbf);
  EXPECT_TRUE(info.iss.empty() && info.cid.empty() && info.sub.empty());
  EXPECT_TRUE(info.aud.empty() && info.scp.empty());
}

TEST(InspectAuthorization, ClaimTypeVariants) {
  const token_info info = inspect_authorization(
      "Bearer " + jwt(R"({"exp":1700003600.9,"iat":"1700000000","nbf":18446744073709551615,)"
                      R"("aud":["a","b",3],"scope":"okta.users.read  okta.logs.read","iss":42})"));
  ASSERT_EQ(info.kind, credential_kind::bearer_jwt);
  EXPECT_EQ(info.exp, 1700003600);     // fraction dropped
  EXPECT_FALSE(info.iat.has_value());  // a string is not a NumericDate
  EXPECT_FALSE(info.nbf.has_value());  // beyond int64
  EXPECT_EQ(info.aud, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(info.scp, (std::vector<std::string>{"okta.users.read", "okta.logs.read"}));
  EXPECT_TRUE(info.iss.empty());
}

TEST(InspectAuthorization, ScpPreferredOverScope) {
  const token_info info = inspect_authorization("Bearer " + jwt(R"({"scp":["a"],"scope":"b c"})"));
  EXPECT_EQ(info.scp, std::vector<std::string>{"a"});
}

TEST(InspectAuthorization, SizeBoundIsExact) {
  const std::string at_bound = "Bearer " + std::string(max_authorization_bytes - 7, 'a');
  EXPECT_EQ(inspect_authorization(at_bound).kind, credential_kind::bearer_opaque);
  const std::string over = at_bound + "a";
  EXPECT_EQ(inspect_authorization(over).malformed_reason, "token_too_large");
}

// A stand-in for the I/O side's HMAC: a key mixed into SHA-256, enough to tell keys apart.
credential_digest fake_digest(std::string key) {
  return [key](std::string_view credential) { return sha256_of(key + "|" + std::string(credential)); };
}

TEST(KeyedFingerprint, ComesFromTheInjectedDigestAndNeverTheToken) {
  const std::string token = jwt(good_claims);
  const auto digest = fake_digest("k1");
  const std::string fp = token_fingerprint(token, digest);
  EXPECT_EQ(fp, to_hex(sha256_of("k1|" + token)).substr(0, 12));
  EXPECT_EQ(token.find(fp), std::string::npos);
  EXPECT_EQ(inspect_authorization("Bearer " + token, digest).fingerprint, fp);
  EXPECT_EQ(inspect_authorization("bearer   " + token, digest).fingerprint, fp);
  EXPECT_NE(token_fingerprint(token + "x", digest), fp);
  // Another install's key gives another fingerprint: a guess cannot be confirmed without it.
  EXPECT_NE(token_fingerprint(token, fake_digest("k2")), fp);
  EXPECT_EQ(token_fingerprint(token, {}), "");
}

// inspect_caller gives what inspect_authorization and caller_key give, with one digest.
TEST(InspectCaller, IsInspectAndCallerKeyWithOneDigest) {
  int calls = 0;
  const auto k = fake_digest("k");
  const credential_digest counting = [&](std::string_view c) {
    ++calls;
    return k(c);
  };
  for (const std::string& v :
       {"Bearer " + jwt(good_claims), std::string("SSWS 00QCjAl4MlV-WPXM0HmjFx_vbGua0HmjFxvbGua"),
        std::string("Bearer opaque-token"), std::string("hunter2"), std::string("   ")}) {
    for (const credential_digest* d : {&counting, static_cast<const credential_digest*>(nullptr)}) {
      calls = 0;
      const credential_digest none;
      const credential_digest& digest = d != nullptr ? *d : none;
      const caller_info c = inspect_caller(v, digest);
      const int used = calls;
      EXPECT_EQ(c.authorization, v);
      const token_info want = inspect_authorization(v, digest);
      EXPECT_EQ(c.token.kind, want.kind) << v;
      EXPECT_EQ(c.token.malformed_reason, want.malformed_reason) << v;
      EXPECT_EQ(c.token.fingerprint, want.fingerprint) << v;
      EXPECT_EQ(c.token.cid, want.cid) << v;
      EXPECT_EQ(c.token.exp, want.exp) << v;
      EXPECT_EQ(c.key, caller_key(v, digest)) << v;
      EXPECT_LE(used, 1) << v;
      if (d != nullptr && v.find_first_not_of(" \t") != std::string::npos) {
        EXPECT_EQ(used, 1) << v;
      }
    }
  }
}

TEST(KeyedFingerprint, OnlyWellFormedCredentialsAreFingerprinted) {
  const auto digest = fake_digest("k");
  // Well-formed: a JWT whose three parts decode, an SSWS token of Okta's shape.
  EXPECT_EQ(inspect_authorization("Bearer " + jwt(good_claims), digest).fingerprint.size(), 12u);
  EXPECT_EQ(inspect_authorization("SSWS 00QCjAl4MlV-WPXM0HmjFx_vbGua0HmjFxvbGua", digest).fingerprint.size(),
            12u);
  // Never: malformed values (a pasted password among them), opaque tokens, odd SSWS values.
  for (const char* v :
       {"hunter2", "Bearer hunter2 with spaces", "Basic dXNlcjpwYXNz", "Bearer a.b",
        "Bearer eyJhbGciOiJub25lIn0.bm90IGpzb24.c2ln", "Bearer opaque-token-value", "SSWS short",
        "SSWS 11QCjAl4MlVWPXM0HmjFxvbGua", "SSWS 00QCjAl4MlV.WPXM0HmjFxvbGua", "Bearer \"quoted\""}) {
    const auto info = inspect_authorization(v, digest);
    EXPECT_TRUE(info.fingerprint.empty()) << v << " -> " << to_string(info.kind);
  }
}

TEST(KeyedFingerprint, SswsShape) {
  EXPECT_TRUE(is_ssws_shaped("00QCjAl4MlVWPXM0HmjFxvbGua"));
  EXPECT_TRUE(is_ssws_shaped("00" + std::string(62, 'a')));
  EXPECT_FALSE(is_ssws_shaped("00" + std::string(63, 'a')));
  EXPECT_FALSE(is_ssws_shaped("00" + std::string(17, 'a')));
  EXPECT_FALSE(is_ssws_shaped("01QCjAl4MlVWPXM0HmjFxvbGua"));
  EXPECT_FALSE(is_ssws_shaped("00QCjAl4MlVWPXM0Hmj+xvbGua"));
}

TEST(CallerKey, KeyedWhenADigestIsGiven) {
  EXPECT_NE(caller_key("Bearer abc.def.ghi", fake_digest("k1")),
            caller_key("Bearer abc.def.ghi", fake_digest("k2")));
  EXPECT_EQ(caller_key("Bearer abc.def.ghi", fake_digest("k1")),
            caller_key("bearer abc.def.ghi", fake_digest("k1")));
  EXPECT_EQ(caller_key("", fake_digest("k1")), 0u);
}

TEST(CallerKey, StableAcrossSchemeSpellingAndDistinctPerToken) {
  EXPECT_EQ(caller_key(""), 0u);
  EXPECT_EQ(caller_key("  "), 0u);
  const std::uint64_t a = caller_key("Bearer abc.def.ghi");
  EXPECT_NE(a, 0u);
  EXPECT_EQ(caller_key("bearer abc.def.ghi"), a);
  EXPECT_EQ(caller_key("Bearer   abc.def.ghi "), a);
  EXPECT_NE(caller_key("Bearer abc.def.ghj"), a);
  EXPECT_NE(caller_key("SSWS 00abc"), 0u);
  EXPECT_NE(caller_key("garbage"), 0u);
  // The key is the first 8 bytes of SHA-256 of the credential.
  const sha256_digest d = sha256_of("abc.def.ghi");
  std::uint64_t expected = 0;
  for (int i = 0; i < 8; ++i) expected = (expected << 8) | d[static_cast<std::size_t>(i)];
  EXPECT_EQ(a, expected);
}

TEST(ExpiredBeyond, Boundaries) {
  token_info t = inspect_authorization("Bearer " + jwt(R"({"exp":1000})"));
  ASSERT_EQ(t.kind, credential_kind::bearer_jwt);
  EXPECT_FALSE(expired_beyond(t, 999, 30));
  EXPECT_FALSE(expired_beyond(t, 1000, 30));
  EXPECT_FALSE(expired_beyond(t, 1030, 30));  // exactly the margin: not beyond it
  EXPECT_TRUE(expired_beyond(t, 1031, 30));
  EXPECT_TRUE(expired_beyond(t, 1001, 0));
  EXPECT_FALSE(expired_beyond(t, 1000, 0));
}

TEST(ExpiredBeyond, OnlyBearerJwtWithExp) {
  EXPECT_FALSE(expired_beyond(inspect_authorization("Bearer " + jwt("{}")), 1'000'000, 0));
  EXPECT_FALSE(expired_beyond(inspect_authorization("SSWS 00abc"), 1'000'000, 0));
  EXPECT_FALSE(expired_beyond(inspect_authorization(""), 1'000'000, 0));
  token_info forged;
  forged.kind = credential_kind::malformed;
  forged.exp = 1;
  EXPECT_FALSE(expired_beyond(forged, 1'000'000, 0));
}

TEST(ExpiredBeyond, ExtremeValuesDoNotOverflow) {
  token_info t;
  t.kind = credential_kind::bearer_jwt;
  t.exp = INT64_MIN;
  EXPECT_TRUE(expired_beyond(t, INT64_MAX, INT64_MAX - 1));
  t.exp = INT64_MAX;
  EXPECT_FALSE(expired_beyond(t, INT64_MIN, 0));
}

TEST(CredentialKind, ToString) {
  EXPECT_STREQ(to_string(credential_kind::none), "none");
  EXPECT_STREQ(to_string(credential_kind::bearer_jwt), "bearer_jwt");
  EXPECT_STREQ(to_string(credential_kind::bearer_opaque), "bearer_opaque");
  EXPECT_STREQ(to_string(credential_kind::ssws), "ssws");
  EXPECT_STREQ(to_string(credential_kind::malformed), "malformed");
}

}  // namespace
}  // namespace okta_sidecar::auth
