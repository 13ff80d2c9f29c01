#include "okta_sidecar/config/loader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "okta_sidecar/policy/cidr.hpp"
#include "okta_sidecar/policy/host_policy.hpp"

namespace okta_sidecar::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

parse_result parse(std::string_view text) { return parse_config(text, "test.json"); }

// Parses one document and expects exactly one error.
std::string only_error(std::string_view text) {
  auto r = parse(text);
  EXPECT_EQ(r.errors.size(), 1u) << text << "\n" << ::testing::PrintToString(r.errors);
  return r.errors.empty() ? std::string{} : r.errors.front();
}

TEST(Defaults, AreUsableAsTheyAre) {
  config c;
  finalize(c);
  EXPECT_THAT(validate(c), IsEmpty());
  EXPECT_EQ(c.ca.cert_file, "./var/ca.crt");
  EXPECT_EQ(c.ca.key_file, "./var/ca.key");
  EXPECT_FALSE(c.fleet);
  EXPECT_EQ(c.listen.to_string(), "127.0.0.1:3128");
  EXPECT_EQ(c.admin_listen.to_string(), "127.0.0.1:9901");
}

TEST(Defaults, ValidateCleanEvenBeforeFinalize) { EXPECT_THAT(validate(config{}), IsEmpty()); }

TEST(Finalize, DerivesCaFilesFromStateDirOnlyWhenUnset) {
  config c;
  c.state_dir = "/var/lib/okta-sidecar/";
  c.ca.key_file = "/secrets/ca.key";
  finalize(c);
  EXPECT_EQ(c.ca.cert_file, "/var/lib/okta-sidecar/ca.crt");
  EXPECT_EQ(c.ca.key_file, "/secrets/ca.key");
  finalize(c);  // idempotent
  EXPECT_EQ(c.ca.cert_file, "/var/lib/okta-sidecar/ca.crt");
}

TEST(ParseConfig, EmptyObjectKeepsTheBase) {
  config base;
  base.threads = 7;
  base.fleet = fleet_config{"redis://r:6379", "p:", 9, 10, 2};
  auto r = parse_config("{}", "x.json", base);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.cfg, base);
  EXPECT_TRUE(parse("  {\n}\n").ok());
}

// A document that sets every key to a non-default value.
constexpr std::string_view every_key = R"({
  "listen": "0.0.0.0:13128",
  "admin_listen": "[::1]:19901",
  "state_dir": "/var/lib/okta-sidecar",
  "threads": 4,
  "intercept_hosts": ["acme.okta.com", "*.example.com:8443"],
  "tunnel_hosts": ["*.okta-emea.com"],
  "ca": {"cert_file": "/etc/ca.pem", "key_file": "/etc/ca-key.pem", "create_if_missing": true},
  "upstream": {
    "trust_file": "/etc/extra-ca.pem",
    "resolve": {"acme.okta.com:443": "127.0.0.1:8443", "b.okta.com:443": "[::1]:9443"},
    "connect_timeout_ms": 1001,
    "tls_handshake_timeout_ms": 1002,
    "response_timeout_ms": 1003,
    "idle_timeout_ms": 1004,
    "max_connections_per_host": 5,
    "insecure_skip_verify": true
  },
  "rate_limit": {
    "max_wait_ms": 2001,
    "max_queue": 2002,
    "max_queue_total": 2004,
    "max_auth_servers_per_host": 2005,
    "max_concurrency": 2003,
    "initial_concurrency": 2004,
    "coalesce": false,
    "capacity_percent": 60,
    "reserve_fraction": 0.25,
    "buckets_file": "/etc/buckets.json",
    "interactive_paths": ["/login"]
  },
  "cache": {"enabled": false, "stale_if_error_s": 600},
  "circuit_breaker": {"failure_threshold": 9, "open_ms": 3001, "max_open_ms": 3002,
                      "half_open_probes": 2},
  "retry": {"max_attempts": 5, "base_backoff_ms": 50, "max_backoff_ms": 5000,
            "budget_fraction": 0.5, "on_timeout": true},
  "auth": {"reject_expired_locally": true},
  "fleet": {"redis": "redis://u:p@redis:6379/2", "key_prefix": "acme:", "lease_size": 7,
            "timeout_ms": 80, "expected_replicas": 3, "fallback_share": 0.5},
  "log": {"level": "debug", "format": "text", "access_sample": 0.25},
  "client": {
    "header_timeout_ms": 4001,
    "idle_timeout_ms": 4002,
    "request_timeout_ms": 4003,
    "drain_timeout_ms": 4004,
    "max_header_bytes": 4005,
    "max_header_count": 4006,
    "max_body_bytes": 10000000000,
    "max_buffered_body_bytes": 4008,
    "max_connections": 4009
  },
  "access": {
    "proxy_auth_file": "/etc/proxy-users",
    "proxy_auth_env": "SIDECAR_AUTH",
    "allowed_clients": ["10.0.0.0/8", "fd00::/8"],
    "allowed_ports": [443, 8443],
    "allow_private_destinations": true,
    "allow_cleartext": true
  },
  "admin": {"expose_status": true, "allowed_hosts": ["sidecar.internal"]}
})";

TEST(ParseConfig, AcceptsEveryKey) {
  auto r = parse(every_key);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  const config& c = r.cfg;
  EXPECT_EQ(c.listen, (endpoint{"0.0.0.0", 13128}));
  EXPECT_EQ(c.admin_listen, (endpoint{"::1", 19901}));
  EXPECT_EQ(c.state_dir, "/var/lib/okta-sidecar");
  EXPECT_EQ(c.threads, 4u);
  EXPECT_THAT(c.intercept_hosts, ElementsAre("acme.okta.com", "*.example.com:8443"));
  EXPECT_THAT(c.tunnel_hosts, ElementsAre("*.okta-emea.com"));
  EXPECT_EQ(c.ca.cert_file, "/etc/ca.pem");
  EXPECT_EQ(c.ca.key_file, "/etc/ca-key.pem");
  EXPECT_TRUE(c.ca.create_if_missing);
  EXPECT_EQ(c.upstream.trust_file, "/etc/extra-ca.pem");
  EXPECT_EQ(c.upstream.resolve.size(), 2u);
  EXPECT_EQ(c.upstream.resolve.at("acme.okta.com:443"), (endpoint{"127.0.0.1", 8443}));
  EXPECT_EQ(c.upstream.resolve.at("b.okta.com:443"), (endpoint{"::1", 9443}));
  EXPECT_EQ(c.upstream.connect_timeout_ms, 1001u);
  EXPECT_EQ(c.upstream.tls_handshake_timeout_ms, 1002u);
  EXPECT_EQ(c.upstream.response_timeout_ms, 1003u);
  EXPECT_EQ(c.upstream.idle_timeout_ms, 1004u);
  EXPECT_EQ(c.upstream.max_connections_per_host, 5u);
  EXPECT_TRUE(c.upstream.insecure_skip_verify);
  EXPECT_EQ(c.rate_limit.max_wait_ms, 2001u);
  EXPECT_EQ(c.rate_limit.max_queue, 2002u);
  EXPECT_EQ(c.rate_limit.max_concurrency, 2003u);
  EXPECT_EQ(c.rate_limit.initial_concurrency, 2004u);
  EXPECT_FALSE(c.rate_limit.coalesce);
  EXPECT_EQ(c.rate_limit.capacity_percent, 60u);
  EXPECT_FALSE(c.cache.enabled);
  EXPECT_EQ(c.cache.stale_if_error_s, 600u);
  EXPECT_DOUBLE_EQ(c.rate_limit.reserve_fraction, 0.25);
  EXPECT_EQ(c.rate_limit.buckets_file, "/etc/buckets.json");
  EXPECT_THAT(c.rate_limit.interactive_paths, ElementsAre("/login"));
  EXPECT_EQ(c.circuit_breaker.failure_threshold, 9u);
  EXPECT_EQ(c.circuit_breaker.open_ms, 3001u);
  EXPECT_EQ(c.circuit_breaker.max_open_ms, 3002u);
  EXPECT_EQ(c.circuit_breaker.half_open_probes, 2u);
  EXPECT_EQ(c.retry.max_attempts, 5u);
  EXPECT_EQ(c.retry.base_backoff_ms, 50u);
  EXPECT_EQ(c.retry.max_backoff_ms, 5000u);
  EXPECT_DOUBLE_EQ(c.retry.budget_fraction, 0.5);
  EXPECT_TRUE(c.retry.on_timeout);
  EXPECT_TRUE(c.auth.reject_expired_locally);
  ASSERT_TRUE(c.fleet);
  EXPECT_EQ(c.fleet->redis, "redis://u:p@redis:6379/2");
  EXPECT_EQ(c.fleet->key_prefix, "acme:");
  EXPECT_EQ(c.fleet->lease_size, 7u);
  EXPECT_EQ(c.fleet->timeout_ms, 80u);
  EXPECT_EQ(c.fleet->expected_replicas, 3u);
  EXPECT_DOUBLE_EQ(c.fleet->fallback_share, 0.5);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.format, "text");
  EXPECT_DOUBLE_EQ(c.log.access_sample, 0.25);
  EXPECT_EQ(c.client.header_timeout_ms, 4001u);
  EXPECT_EQ(c.client.idle_timeout_ms, 4002u);
  EXPECT_EQ(c.client.request_timeout_ms, 4003u);
  EXPECT_EQ(c.client.drain_timeout_ms, 4004u);
  EXPECT_EQ(c.client.max_header_bytes, 4005u);
  EXPECT_EQ(c.client.max_header_count, 4006u);
  EXPECT_EQ(c.client.max_body_bytes, 10000000000ull);
  EXPECT_EQ(c.client.max_buffered_body_bytes, 4008u);
  EXPECT_EQ(c.access.proxy_auth_file, "/etc/proxy-users");
  EXPECT_EQ(c.access.proxy_auth_env, "SIDECAR_AUTH");
  EXPECT_THAT(c.access.allowed_clients, ElementsAre("10.0.0.0/8", "fd00::/8"));
  EXPECT_THAT(c.access.allowed_ports, ElementsAre(443, 8443));
  EXPECT_TRUE(c.access.allow_private_destinations);
  EXPECT_EQ(c.rate_limit.max_queue_total, 2004u);
  EXPECT_EQ(c.rate_limit.max_auth_servers_per_host, 2005u);
  EXPECT_EQ(c.client.max_connections, 4009u);
  EXPECT_TRUE(c.access.allow_cleartext);
  EXPECT_TRUE(c.admin.expose_status);
  EXPECT_THAT(c.admin.allowed_hosts, ElementsAre("sidecar.internal"));
  EXPECT_THAT(validate(c), IsEmpty());
}

TEST(ParseConfig, EveryKeyOfTheFormatIsExercised) {
  // known_key_paths() is derived from to_json(); every_key must name each of them, so a
  // member added to config without parser support fails here.
  auto doc = nlohmann::json::parse(every_key);
  for (const std::string& path : known_key_paths()) {
    auto ptr = nlohmann::json::json_pointer("/" + [&] {
      std::string p = path;
      std::replace(p.begin(), p.end(), '.', '/');
      return p;
    }());
    EXPECT_TRUE(doc.contains(ptr)) << path;
  }
  EXPECT_GE(known_key_paths().size(), 60u);
}

TEST(ToJson, RoundTripsThroughTheParser) {
  auto r = parse(every_key);
  ASSERT_TRUE(r.ok());
  auto back = parse_config(to_json(r.cfg, secrets::keep).dump(), "round-trip");
  ASSERT_TRUE(back.ok()) << ::testing::PrintToString(back.errors);
  EXPECT_EQ(back.cfg, r.cfg);

  auto defaults = parse_config(to_json(config{}, secrets::keep).dump(2), "defaults");
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults.cfg, config{});
}

TEST(ToJson, RedactsTheRedisPassword) {
  config c;
  c.fleet = fleet_config{};
  c.fleet->redis = "redis://sidecar:hunter2@redis:6379/0";
  EXPECT_EQ(to_json(c, secrets::redact)["fleet"]["redis"], "redis://sidecar:****@redis:6379/0");
  EXPECT_EQ(to_json(c, secrets::keep)["fleet"]["redis"], c.fleet->redis);
  EXPECT_THAT(to_json(c, secrets::redact).dump(), ::testing::Not(HasSubstr("hunter2")));
}

TEST(ParseConfig, ListsAndResolveAreReplacedWholeSectionsMerge) {
  config base;
  base.upstream.resolve["old.okta.com:443"] = {"127.0.0.1", 1};
  auto r = parse_config(R"({"intercept_hosts": ["acme.okta.com"],
                            "upstream": {"resolve": {"new.okta.com:443": "127.0.0.1:2"}},
                            "rate_limit": {"max_queue": 5}})",
                        "x", base);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r.cfg.intercept_hosts, ElementsAre("acme.okta.com"));
  EXPECT_EQ(r.cfg.upstream.resolve.size(), 1u);
  EXPECT_TRUE(r.cfg.upstream.resolve.contains("new.okta.com:443"));
  EXPECT_EQ(r.cfg.rate_limit.max_queue, 5u);
  EXPECT_EQ(r.cfg.rate_limit.max_wait_ms, 60000u);  // untouched sibling keeps the base value
}

TEST(ParseConfig, NullableKeysAcceptNull) {
  config base;
  base.upstream.trust_file = "/x";
  base.rate_limit.buckets_file = "/y";
  base.ca.cert_file = "/z";
  base.fleet = fleet_config{};
  auto r = parse_config(R"({"upstream": {"trust_file": null}, "rate_limit": {"buckets_file": null},
                            "ca": {"cert_file": null}, "fleet": null,
                            "access": {"proxy_auth_file": null, "proxy_auth_env": null}})",
                        "x", base);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_FALSE(r.cfg.upstream.trust_file);
  EXPECT_FALSE(r.cfg.rate_limit.buckets_file);
  EXPECT_EQ(r.cfg.ca.cert_file, "");
  EXPECT_FALSE(r.cfg.fleet);
}

TEST(ParseConfig, FleetObjectStartsFromDefaultsAndMergesIntoAnExistingOne) {
  auto r = parse(R"({"fleet": {"redis": "redis://r:6379"}})");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.cfg.fleet);
  EXPECT_EQ(r.cfg.fleet->redis, "redis://r:6379");
  EXPECT_EQ(r.cfg.fleet->key_prefix, "okta-sidecar:");
  EXPECT_EQ(r.cfg.fleet->lease_size, 5u);

  config base;
  base.fleet = fleet_config{"redis://a:1", "p:", 9, 10, 2};
  auto merged = parse_config(R"({"fleet": {"lease_size": 3}})", "x", base);
  ASSERT_TRUE(merged.ok());
  EXPECT_EQ(merged.cfg.fleet->redis, "redis://a:1");
  EXPECT_EQ(merged.cfg.fleet->lease_size, 3u);
  EXPECT_EQ(merged.cfg.fleet->expected_replicas, 2u);
}

TEST(ParseConfig, IntegersAtTheirTypeBoundaries) {
  auto r = parse(R"({"threads": 4294967295, "client": {"max_body_bytes": 18446744073709551615},
                     "access": {"allowed_ports": [65535, 0]}})");
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg.threads, 4294967295u);
  EXPECT_EQ(r.cfg.client.max_body_bytes, 18446744073709551615ull);
  EXPECT_THAT(r.cfg.access.allowed_ports, ElementsAre(65535, 0));
  EXPECT_EQ(only_error(R"({"threads": 4294967296})"), "threads: must be at most 4294967295, got 4294967296");
  EXPECT_EQ(only_error(R"({"access": {"allowed_ports": [443, 65536]}})"),
            "access.allowed_ports[1]: must be at most 65535, got 65536");
}

struct error_case {
  std::string_view name;
  std::string_view json;
  std::string_view error;
};

class ParseErrors : public ::testing::TestWithParam<error_case> {};

TEST_P(ParseErrors, NameTheKeyAndTheProblem) { EXPECT_EQ(only_error(GetParam().json), GetParam().error); }

INSTANTIATE_TEST_SUITE_P(
    Config, ParseErrors,
    ::testing::Values(
        // Unknown keys, with suggestions.
        error_case{"TypoInSection", R"({"upstream": {"resolv": {}}})",
                   "upstream.resolv: unknown key (did you mean \"resolve\"?)"},
        error_case{"TypoAtTop", R"({"lissten": "127.0.0.1:1"})",
                   "lissten: unknown key (did you mean \"listen\"?)"},
        error_case{"DashesForUnderscores", R"({"rate_limit": {"max-wait-ms": 5}})",
                   "rate_limit.max-wait-ms: unknown key (did you mean \"max_wait_ms\"?)"},
        error_case{"TypoInFleet", R"({"fleet": {"redis": "redis://r:1", "lease": 1}})",
                   "fleet.lease: unknown key (did you mean \"lease_size\"?)"},
        error_case{"KeyInTheWrongSection", R"({"max_wait_ms": 5})",
                   "max_wait_ms: unknown key (did you mean \"rate_limit.max_wait_ms\"?)"},
        error_case{"KeyInAnotherWrongSection", R"({"retry": {"open_ms": 5}})",
                   "retry.open_ms: unknown key (did you mean \"circuit_breaker.open_ms\"?)"},
        error_case{"NoSuggestionListsKnownKeys", R"({"auth": {"banana": 1}})",
                   "auth.banana: unknown key (known keys here: reject_expired_locally)"},
        error_case{"OddKeyIsQuoted", R"({"log": {"a b": 1}})",
                   "log[\"a b\"]: unknown key (known keys here: level, format, access_sample)"},
        // Wrong types.
        error_case{"StringForInteger", R"({"rate_limit": {"max_wait_ms": "abc"}})",
                   "rate_limit.max_wait_ms: expected a non-negative integer, got \"abc\""},
        error_case{"FractionForInteger", R"({"upstream": {"connect_timeout_ms": 1.5}})",
                   "upstream.connect_timeout_ms: expected a non-negative integer, got 1.5"},
        error_case{"FloatSpellingForInteger", R"({"threads": 2.0})",
                   "threads: expected a non-negative integer, got 2.0"},
        error_case{"NegativeInteger", R"({"retry": {"max_attempts": -1}})",
                   "retry.max_attempts: expected a non-negative integer, got -1"},
        error_case{"BoolForInteger", R"({"threads": true})",
                   "threads: expected a non-negative integer, got true"},
        error_case{"NullForInteger", R"({"threads": null})",
                   "threads: expected a non-negative integer, got null"},
        error_case{"StringForBool", R"({"auth": {"reject_expired_locally": "true"}})",
                   "auth.reject_expired_locally: expected true or false, got \"true\""},
        error_case{"IntegerForBool", R"({"upstream": {"insecure_skip_verify": 1}})",
                   "upstream.insecure_skip_verify: expected true or false, got 1"},
        error_case{"StringForNumber", R"({"rate_limit": {"reserve_fraction": "0.1"}})",
                   "rate_limit.reserve_fraction: expected a number, got \"0.1\""},
        error_case{"NumberForString", R"({"state_dir": 5})", "state_dir: expected a string, got 5"},
        error_case{"ArrayForOptionalString", R"({"upstream": {"trust_file": ["a"]}})",
                   "upstream.trust_file: expected a string or null, got an array"},
        error_case{"ObjectForSection", R"({"log": "debug"})", "log: expected an object, got \"debug\""},
        error_case{"ArrayForSection", R"({"retry": [1]})", "retry: expected an object, got an array"},
        error_case{"StringForList", R"({"intercept_hosts": "*.okta.com"})",
                   "intercept_hosts: expected an array of strings, got \"*.okta.com\""},
        error_case{"NumberInList", R"({"tunnel_hosts": ["a.com", 5]})",
                   "tunnel_hosts[1]: expected a string, got 5"},
        error_case{"StringInPortList", R"({"access": {"allowed_ports": ["443"]}})",
                   "access.allowed_ports[0]: expected a non-negative integer, got \"443\""},
        error_case{"ObjectForPortList", R"({"access": {"allowed_ports": {}}})",
                   "access.allowed_ports: expected an array of port numbers, got an object"},
        error_case{"ArrayForResolve", R"({"upstream": {"resolve": []}})",
                   "upstream.resolve: expected an object mapping \"host:port\" to \"address:port\", "
                   "got an array"},
        error_case{"NumberForResolveTarget", R"({"upstream": {"resolve": {"a.com:443": 8443}}})",
                   "upstream.resolve[\"a.com:443\"]: expected a \"HOST:PORT\" string, got 8443"},
        error_case{"StringForFleet", R"({"fleet": "redis://r:1"})",
                   "fleet: expected null (local mode) or an object with \"redis\", got "
                   "\"redis://r:1\""},
        error_case{"NullForCaFileIsFineButNumberIsNot", R"({"ca": {"key_file": 0}})",
                   "ca.key_file: expected a file path or null, got 0"},
        error_case{"LongStringIsShortened",
                   R"({"threads": "0123456789012345678901234567890123456789012345678901234567890123456789"})",
                   "threads: expected a non-negative integer, got "
                   "\"012345678901234567890123456789012345678901234567890123456...\""},
        // Bad endpoints.
        error_case{"EndpointWithoutPort", R"({"listen": "localhost"})",
                   "listen: \"localhost\" has no port; expected HOST:PORT, e.g. \"127.0.0.1:3128\""},
        error_case{"EndpointPortTooLarge", R"({"admin_listen": "127.0.0.1:99999"})",
                   "admin_listen: \"127.0.0.1:99999\" has port \"99999\", which is not a number "
                   "from 0 to 65535"},
        error_case{"EndpointNotString", R"({"listen": 3128})",
                   "listen: expected a \"HOST:PORT\" string, got 3128"},
        error_case{"ResolveTargetBad", R"({"upstream": {"resolve": {"a.com:443": "127.0.0.1"}}})",
                   "upstream.resolve[\"a.com:443\"]: \"127.0.0.1\" has no port; expected "
                   "HOST:PORT, e.g. \"127.0.0.1:3128\""},
        // Duplicates and document shape.
        error_case{"DuplicateKey", R"({"threads": 1, "threads": 2})",
                   "threads: duplicate key (only one value would take effect)"},
        error_case{"DuplicateNestedKey", R"({"fleet": {"redis": "redis://a:1", "redis": "redis://b:1"}})",
                   "fleet.redis: duplicate key (only one value would take effect)"},
        error_case{"TopLevelArray", R"([1, 2])",
                   "test.json: the configuration must be a JSON object ({...}), got an array"},
        error_case{"TopLevelNull", "null",
                   "test.json: the configuration must be a JSON object ({...}), got null"}),
    [](const ::testing::TestParamInfo<error_case>& info) { return std::string(info.param.name); });

TEST(ParseConfig, SyntaxErrorsNameSourceLineColumnAndByte) {
  auto r = parse_config("{\n  \"threads\": 1,\n  \"listen\": \"a:1\",,\n}\n", "/etc/okta-sidecar.json");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0],
            "/etc/okta-sidecar.json:3:19: invalid JSON (byte 36): syntax error while parsing "
            "object key - unexpected ','; expected string literal");
}

TEST(ParseConfig, SyntaxErrorOnTheFirstLineAndAtTheEnd) {
  EXPECT_THAT(only_error("{\"threads\" 1}"), HasSubstr("test.json:1:12: invalid JSON (byte 11): "));
  EXPECT_THAT(only_error("{\"threads\": 1"), HasSubstr("test.json:1:14: invalid JSON (byte 13): "));
  EXPECT_THAT(only_error(""), HasSubstr("test.json:1:1: invalid JSON (byte 0): "));
  EXPECT_THAT(only_error("{\"a\": 1} x"), HasSubstr("test.json:1:10: invalid JSON (byte 9): "));
}

TEST(ParseConfig, DuplicateKeysInsideArraysNameTheElement) {
  auto r = parse(R"({"tunnel_hosts": ["a.com", {"a": 1, "a": 2}]})");
  EXPECT_THAT(r.errors, ElementsAre("tunnel_hosts[1].a: duplicate key (only one value would take "
                                    "effect)",
                                    "tunnel_hosts[1]: expected a string, got an object"));
}

TEST(ParseConfig, CommentsGetAHint) {
  EXPECT_THAT(only_error("{\n  // the proxy port\n  \"threads\": 1\n}"),
              HasSubstr("(JSON does not allow comments)"));
  EXPECT_THAT(only_error("{\n  \"threads\": 1,\n}"), ::testing::Not(HasSubstr("comments")));
}

TEST(ParseConfig, CollectsEveryErrorAtOnce) {
  auto r = parse(R"({
    "lissten": "x",
    "threads": -1,
    "upstream": {"resolv": {}, "connect_timeout_ms": "5s"},
    "rate_limit": {"max_wait_ms": 1.5, "max_queue": 10},
    "log": {"level": 3},
    "access": {"allowed_ports": [443, "80", -1]}
  })");
  EXPECT_THAT(r.errors,
              UnorderedElementsAre("lissten: unknown key (did you mean \"listen\"?)",
                                   "threads: expected a non-negative integer, got -1",
                                   "upstream.resolv: unknown key (did you mean \"resolve\"?)",
                                   "upstream.connect_timeout_ms: expected a non-negative integer, got \"5s\"",
                                   "rate_limit.max_wait_ms: expected a non-negative integer, got 1.5",
                                   "log.level: expected a string, got 3",
                                   "access.allowed_ports[1]: expected a non-negative integer, got \"80\"",
                                   "access.allowed_ports[2]: expected a non-negative integer, got -1"));
  // The good key next to the bad ones still took effect; the bad ones kept their defaults.
  EXPECT_EQ(r.cfg.rate_limit.max_queue, 10u);
  EXPECT_EQ(r.cfg.rate_limit.max_wait_ms, 60000u);
  EXPECT_THAT(r.cfg.access.allowed_ports, ElementsAre(443));
}

// ---- validate() ----

struct validate_case {
  std::string_view name;
  std::function<void(config&)> mutate;
  std::string_view error;
};

class ValidateErrors : public ::testing::TestWithParam<validate_case> {};

TEST_P(ValidateErrors, NameTheKeyAndTheProblem) {
  config c;
  GetParam().mutate(c);
  finalize(c);
  EXPECT_THAT(validate(c), ElementsAre(std::string(GetParam().error)));
}

INSTANTIATE_TEST_SUITE_P(
    Config, ValidateErrors,
    ::testing::Values(
        validate_case{"ListenEqualsAdmin", [](config& c) { c.admin_listen = c.listen; },
                      "admin_listen: \"127.0.0.1:3128\" collides with listen \"127.0.0.1:3128\"; "
                      "give them different ports"},
        validate_case{"AdminOnWildcardSamePort",
                      [](config& c) { c.admin_listen = {"0.0.0.0", 3128}; },
                      "admin_listen: \"0.0.0.0:3128\" collides with listen \"127.0.0.1:3128\"; "
                      "give them different ports"},
        validate_case{"ListenOnIpv6WildcardSamePort",
                      [](config& c) { c.listen = {"::", 9901}; },
                      "admin_listen: \"127.0.0.1:9901\" collides with listen \"[::]:9901\"; give "
                      "them different ports"},
        validate_case{"BadListenHost", [](config& c) { c.listen.host = "bad host"; },
                      "listen: host \"bad host\" is not a valid host name or IP address"},
        validate_case{"BadListenIpv6", [](config& c) { c.listen.host = "1::2::3"; },
                      "listen: host \"1::2::3\" is not a valid host name or IP address"},
        validate_case{"EmptyStateDir", [](config& c) { c.state_dir = ""; c.ca = {"/a", "/b"}; },
                      "state_dir: must not be empty"},
        validate_case{"TooManyThreads", [](config& c) { c.threads = 257; },
                      "threads: must be at most 256, got 257 (0 means one per core)"},
        validate_case{"BadInterceptPattern",
                      [](config& c) { c.intercept_hosts = {"a.okta.com", "b.okta.com", "*okta.com"}; },
                      "intercept_hosts[2]: \"*okta.com\" is not a host name or *.suffix wildcard"},
        validate_case{"BadTunnelPattern", [](config& c) { c.tunnel_hosts = {"a.com:0"}; },
                      "tunnel_hosts[0]: \"a.com:0\" has port \"0\", which is not a number from 1 "
                      "to 65535"},
        validate_case{"HostBothInterceptedAndTunnelled",
                      [](config& c) { c.tunnel_hosts = {"*.OKTA.com"}; },
                      "tunnel_hosts[0]: \"*.OKTA.com\" is also in intercept_hosts; a host is "
                      "either intercepted or tunnelled"},
        validate_case{"CaCertEqualsKey", [](config& c) { c.ca = {"/x/ca.pem", "/x/ca.pem"}; },
                      "ca.key_file: must differ from ca.cert_file (both are \"/x/ca.pem\")"},
        validate_case{"EmptyTrustFile", [](config& c) { c.upstream.trust_file = ""; },
                      "upstream.trust_file: must not be empty (use null for the default)"},
        validate_case{"ResolveKeyWithoutPort",
                      [](config& c) { c.upstream.resolve["acme.okta.com"] = {"127.0.0.1", 8443}; },
                      "upstream.resolve[\"acme.okta.com\"]: the key \"acme.okta.com\" has no port; "
                      "expected HOST:PORT, e.g. \"127.0.0.1:3128\""},
        validate_case{"ResolveKeyPortZero",
                      [](config& c) { c.upstream.resolve["acme.okta.com:0"] = {"127.0.0.1", 8443}; },
                      "upstream.resolve[\"acme.okta.com:0\"]: the key \"acme.okta.com:0\" needs a "
                      "port from 1 to 65535"},
        validate_case{"ResolveTargetPortZero",
                      [](config& c) { c.upstream.resolve["acme.okta.com:443"] = {"127.0.0.1", 0}; },
                      "upstream.resolve[\"acme.okta.com:443\"]: \"127.0.0.1:0\" needs a port from "
                      "1 to 65535"},
        validate_case{"ConnectTimeoutZero", [](config& c) { c.upstream.connect_timeout_ms = 0; },
                      "upstream.connect_timeout_ms: must be greater than 0 (a timeout of 0 would "
                      "fail every operation)"},
        validate_case{"HandshakeTimeoutZero",
                      [](config& c) { c.upstream.tls_handshake_timeout_ms = 0; },
                      "upstream.tls_handshake_timeout_ms: must be greater than 0 (a timeout of 0 "
                      "would fail every operation)"},
        validate_case{"ResponseTimeoutZero", [](config& c) { c.upstream.response_timeout_ms = 0; },
                      "upstream.response_timeout_ms: must be greater than 0 (a timeout of 0 would "
                      "fail every operation)"},
        validate_case{"UpstreamIdleZero", [](config& c) { c.upstream.idle_timeout_ms = 0; },
                      "upstream.idle_timeout_ms: must be greater than 0 (a timeout of 0 would fail "
                      "every operation)"},
        validate_case{"NoUpstreamConnections",
                      [](config& c) { c.upstream.max_connections_per_host = 0; },
                      "upstream.max_connections_per_host: must be at least 1, got 0"},
        validate_case{"NoConcurrency", [](config& c) { c.rate_limit.max_concurrency = 0; },
                      "rate_limit.max_concurrency: must be at least 1, got 0"},
        validate_case{"NoInitialConcurrency", [](config& c) { c.rate_limit.initial_concurrency = 0; },
                      "rate_limit.initial_concurrency: must be at least 1, got 0"},
        validate_case{"CapacityPercentZero", [](config& c) { c.rate_limit.capacity_percent = 0; },
                      "rate_limit.capacity_percent: must be at least 1, got 0"},
        validate_case{"CapacityPercentAbove100", [](config& c) { c.rate_limit.capacity_percent = 101; },
                      "rate_limit.capacity_percent: must be at most 100, got 101"},
        validate_case{"ReserveFractionOne", [](config& c) { c.rate_limit.reserve_fraction = 1.0; },
                      "rate_limit.reserve_fraction: must be at least 0 and less than 1, got 1.0"},
        validate_case{"ReserveFractionNegative",
                      [](config& c) { c.rate_limit.reserve_fraction = -0.1; },
                      "rate_limit.reserve_fraction: must be at least 0 and less than 1, got -0.1"},
        validate_case{"EmptyBucketsFile", [](config& c) { c.rate_limit.buckets_file = ""; },
                      "rate_limit.buckets_file: must not be empty (use null for the default)"},
        validate_case{"RelativeInteractivePath",
                      [](config& c) { c.rate_limit.interactive_paths = {"/ok", "oauth2/v1/token"}; },
                      "rate_limit.interactive_paths[1]: \"oauth2/v1/token\" is not a path "
                      "pattern; expected \"/...\" without spaces, query or fragment"},
        validate_case{"InteractivePathWithQuery",
                      [](config& c) { c.rate_limit.interactive_paths = {"/a?b"}; },
                      "rate_limit.interactive_paths[0]: \"/a?b\" is not a path pattern; expected "
                      "\"/...\" without spaces, query or fragment"},
        validate_case{"BreakerThresholdZero",
                      [](config& c) { c.circuit_breaker.failure_threshold = 0; },
                      "circuit_breaker.failure_threshold: must be at least 1, got 0"},
        validate_case{"BreakerOpenZero",
                      [](config& c) { c.circuit_breaker.open_ms = 0; },
                      "circuit_breaker.open_ms: must be greater than 0 (a timeout of 0 would fail "
                      "every operation)"},
        validate_case{"BreakerMaxOpenBelowOpen",
                      [](config& c) { c.circuit_breaker.max_open_ms = 29999; },
                      "circuit_breaker.max_open_ms: must be at least circuit_breaker.open_ms "
                      "(30000), got 29999"},
        validate_case{"NoHalfOpenProbes", [](config& c) { c.circuit_breaker.half_open_probes = 0; },
                      "circuit_breaker.half_open_probes: must be at least 1, got 0"},
        validate_case{"NoAttempts", [](config& c) { c.retry.max_attempts = 0; },
                      "retry.max_attempts: must be at least 1, got 0 (1 means no retries)"},
        validate_case{"TooManyAttempts", [](config& c) { c.retry.max_attempts = 11; },
                      "retry.max_attempts: must be at most 10, got 11"},
        validate_case{"BackoffZero", [](config& c) { c.retry.base_backoff_ms = 0; },
                      "retry.base_backoff_ms: must be at least 1, got 0"},
        validate_case{"MaxBackoffBelowBase", [](config& c) { c.retry.max_backoff_ms = 99; },
                      "retry.max_backoff_ms: must be at least retry.base_backoff_ms (100), got 99"},
        validate_case{"BudgetAboveOne", [](config& c) { c.retry.budget_fraction = 1.5; },
                      "retry.budget_fraction: must be from 0 to 1, got 1.5"},
        validate_case{"HeadLimitAboveBeastsFieldLimit", [](config& c) { c.client.max_header_bytes = 65537; },
                      "client.max_header_bytes: must be at most 65536, got 65537"},
        validate_case{"FleetWithoutRedis", [](config& c) { c.fleet = fleet_config{}; },
                      "fleet.redis: is required when fleet is set (or set \"fleet\": null for "
                      "local mode)"},
        validate_case{"FleetBadRedisUrlIsRedacted",
                      [](config& c) { c.fleet = fleet_config{"redis://u:hunter2@r"}; },
                      "fleet.redis: \"redis://u:****@r\" is not a valid Redis URL: it has server "
                      "\"r\", which is not HOST:PORT (expected redis://[user:password@]host:port[/db])"},
        validate_case{"FleetWrongScheme",
                      [](config& c) { c.fleet = fleet_config{"http://r:6379"}; },
                      "fleet.redis: \"http://r:6379\" is not a valid Redis URL: it does not start "
                      "with redis:// or rediss:// (expected redis://[user:password@]host:port[/db])"},
        validate_case{"FleetLeaseZero",
                      [](config& c) {
                        c.fleet = fleet_config{"redis://r:6379"};
                        c.fleet->lease_size = 0;
                      },
                      "fleet.lease_size: must be at least 1, got 0"},
        validate_case{"FleetTimeoutZero",
                      [](config& c) {
                        c.fleet = fleet_config{"redis://r:6379"};
                        c.fleet->timeout_ms = 0;
                      },
                      "fleet.timeout_ms: must be greater than 0 (a timeout of 0 would fail every "
                      "operation)"},
        validate_case{"FleetNoReplicas",
                      [](config& c) {
                        c.fleet = fleet_config{"redis://r:6379"};
                        c.fleet->expected_replicas = 0;
                      },
                      "fleet.expected_replicas: must be at least 1, got 0"},
        validate_case{"FleetShareAboveOne",
                      [](config& c) {
                        c.fleet = fleet_config{"redis://r:6379"};
                        c.fleet->fallback_share = 1.5;
                      },
                      "fleet.fallback_share: must be between 0 (= 1/expected_replicas) and 1, got 1.5"},
        validate_case{"LogLevelTypo", [](config& c) { c.log.level = "warning"; },
                      "log.level: \"warning\" is not one of trace, debug, info, warn, error (did "
                      "you mean \"warn\"?)"},
        validate_case{"LogLevelUnknown", [](config& c) { c.log.level = "verbose"; },
                      "log.level: \"verbose\" is not one of trace, debug, info, warn, error"},
        validate_case{"LogFormatUnknown", [](config& c) { c.log.format = "jsonl"; },
                      "log.format: \"jsonl\" is not one of json, text (did you mean \"json\"?)"},
        validate_case{"AccessSampleAboveOne", [](config& c) { c.log.access_sample = 1.5; },
                      "log.access_sample: must be from 0 (errors only) to 1 (every request), got 1.5"},
        validate_case{"ClientHeaderTimeoutZero", [](config& c) { c.client.header_timeout_ms = 0; },
                      "client.header_timeout_ms: must be greater than 0 (a timeout of 0 would fail "
                      "every operation)"},
        validate_case{"ClientIdleTimeoutZero", [](config& c) { c.client.idle_timeout_ms = 0; },
                      "client.idle_timeout_ms: must be greater than 0 (a timeout of 0 would fail "
                      "every operation)"},
        validate_case{"ClientRequestTimeoutZero",
                      [](config& c) { c.client.request_timeout_ms = 0; },
                      "client.request_timeout_ms: must be greater than 0 (a timeout of 0 would "
                      "fail every operation)"},
        validate_case{"TinyHeaderLimit", [](config& c) { c.client.max_header_bytes = 1023; },
                      "client.max_header_bytes: must be at least 1024, got 1023"},
        validate_case{"NoHeadersAllowed", [](config& c) { c.client.max_header_count = 0; },
                      "client.max_header_count: must be at least 1, got 0"},
        validate_case{"EmptyAuthFile", [](config& c) { c.access.proxy_auth_file = ""; },
                      "access.proxy_auth_file: must not be empty (use null for the default)"},
        validate_case{"BadAuthEnvName", [](config& c) { c.access.proxy_auth_env = "1PASS"; },
                      "access.proxy_auth_env: \"1PASS\" is not an environment variable name "
                      "([A-Za-z_][A-Za-z0-9_]*)"},
        validate_case{"BadCidr",
                      [](config& c) { c.access.allowed_clients = {"10.0.0.0/8", "10.0.0.0/33"}; },
                      "access.allowed_clients[1]: \"10.0.0.0/33\" is not a CIDR: has prefix length "
                      "/33; expected a number from 0 to 32 for IPv4"},
        validate_case{"CidrWithHostBits",
                      [](config& c) { c.access.allowed_clients = {"fd00::1/8"}; },
                      "access.allowed_clients[0]: \"fd00::1/8\" is not a CIDR: has address bits "
                      "set after the /8 prefix (did you mean \"fd00::/8\"?)"},
        validate_case{"CidrNotAnAddress",
                      [](config& c) { c.access.allowed_clients = {"office"}; },
                      "access.allowed_clients[0]: \"office\" is not a CIDR: \"office\" is not an "
                      "IPv4 or IPv6 address"},
        validate_case{"NoAllowedPorts", [](config& c) { c.access.allowed_ports.clear(); },
                      "access.allowed_ports: must list at least one port (e.g. [443])"},
        validate_case{"AllowedPortZero", [](config& c) { c.access.allowed_ports = {443, 0}; },
                      "access.allowed_ports[1]: must be a port from 1 to 65535, got 0"}),
    [](const ::testing::TestParamInfo<validate_case>& info) { return std::string(info.param.name); });

TEST(Validate, AcceptsEveryBoundaryValue) {
  config c;
  c.listen = {"127.0.0.1", 0};
  c.admin_listen = {"127.0.0.1", 0};  // two ephemeral ports never collide
  c.threads = 256;
  c.rate_limit.reserve_fraction = 0.999;
  c.rate_limit.max_wait_ms = 0;
  c.rate_limit.max_queue = 0;
  c.rate_limit.max_concurrency = 1;
  c.circuit_breaker.max_open_ms = c.circuit_breaker.open_ms;
  c.retry.max_attempts = 1;
  c.retry.max_backoff_ms = c.retry.base_backoff_ms;
  c.retry.budget_fraction = 1.0;
  c.client.max_header_bytes = 1024;
  c.client.drain_timeout_ms = 0;
  c.upstream.max_connections_per_host = 1;
  c.upstream.resolve["acme.okta.com:443"] = {"::1", 65535};
  c.fleet = fleet_config{"rediss://:pw@redis.internal:6380/15"};
  c.access.allowed_clients = {"0.0.0.0/0", "::/0", "127.0.0.1", "::1"};
  c.access.allowed_ports = {1, 65535};
  c.access.proxy_auth_env = "_SIDECAR_AUTH_2";
  c.intercept_hosts = {"*.okta.com", "acme.okta.com:443", "[::1]:8443", "127.0.0.1"};
  c.tunnel_hosts = {"acme.okta.com"};    // differs from "acme.okta.com:443": not a conflict
  c.admin_listen = {"127.0.0.2", 3128};  // same port, different specific host
  c.listen = {"127.0.0.1", 3128};
  finalize(c);
  EXPECT_THAT(validate(c), IsEmpty());
  c.rate_limit.reserve_fraction = 0.0;
  c.retry.budget_fraction = 0.0;
  EXPECT_THAT(validate(c), IsEmpty());
}

TEST(Validate, ReportsEveryProblemAtOnce) {
  config c;
  c.threads = 1000;
  c.log.level = "loud";
  c.access.allowed_ports.clear();
  c.retry.max_attempts = 0;
  EXPECT_EQ(validate(c).size(), 4u);
}

TEST(KnownKeyPaths, CoverTheContractKeys) {
  const auto& keys = known_key_paths();
  for (std::string_view k : {"listen",
                             "admin_listen",
                             "state_dir",
                             "threads",
                             "intercept_hosts",
                             "tunnel_hosts",
                             "ca",
                             "ca.cert_file",
                             "ca.key_file",
                             "upstream.trust_file",
                             "upstream.resolve",
                             "upstream.connect_timeout_ms",
                             "upstream.response_timeout_ms",
                             "upstream.idle_timeout_ms",
                             "upstream.max_connections_per_host",
                             "rate_limit.max_wait_ms",
                             "rate_limit.max_queue",
                             "rate_limit.max_concurrency",
                             "rate_limit.reserve_fraction",
                             "rate_limit.buckets_file",
                             "circuit_breaker.failure_threshold",
                             "circuit_breaker.open_ms",
                             "retry.max_attempts",
                             "retry.base_backoff_ms",
                             "auth.reject_expired_locally",
                             "fleet",
                             "fleet.redis",
                             "log.level",
                             "log.format",
                             "log.access_sample",
                             "ca.create_if_missing"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
}

}  // namespace
}  // namespace okta_sidecar::config

namespace okta_sidecar::config {
namespace {

TEST(LoaderIssue14, DefaultsAreBoundedAndClosed) {
  const config c;
  EXPECT_EQ(c.rate_limit.max_queue_total, 10000u);
  EXPECT_EQ(c.rate_limit.max_auth_servers_per_host, 64u);
  EXPECT_EQ(c.client.max_connections, 4096u);
  EXPECT_EQ(c.access.allowed_ports, (std::vector<std::uint16_t>{443}));
  EXPECT_FALSE(c.access.allow_cleartext);
  EXPECT_FALSE(c.admin.expose_status);
  EXPECT_TRUE(c.admin.allowed_hosts.empty());
}

TEST(LoaderIssue14, KeysParseValidateAndRoundTrip) {
  auto r = parse_config(R"({"rate_limit": {"max_queue_total": 50, "max_auth_servers_per_host": 8},
                            "client": {"max_connections": 100},
                            "access": {"allow_cleartext": true, "allowed_ports": [443, 80]},
                            "admin": {"expose_status": true, "allowed_hosts": ["sidecar.internal"]}})",
                        "test");
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg.rate_limit.max_queue_total, 50u);
  EXPECT_EQ(r.cfg.rate_limit.max_auth_servers_per_host, 8u);
  EXPECT_EQ(r.cfg.client.max_connections, 100u);
  EXPECT_TRUE(r.cfg.access.allow_cleartext);
  EXPECT_TRUE(r.cfg.admin.expose_status);
  EXPECT_EQ(r.cfg.admin.allowed_hosts, std::vector<std::string>{"sidecar.internal"});
  EXPECT_TRUE(validate(r.cfg).empty());
  const auto j = to_json(r.cfg, secrets::keep);
  EXPECT_EQ(j["admin"]["allowed_hosts"][0], "sidecar.internal");
  EXPECT_EQ(j["client"]["max_connections"], 100);

  auto bad = parse_config(R"({"rate_limit": {"max_queue_total": 0}, "client": {"max_connections": 0},
                              "admin": {"allowed_hosts": ["bad host"], "expose": true}})",
                          "test");
  EXPECT_THAT(bad.errors, ElementsAre(HasSubstr("admin.expose: unknown key")));
  const auto errors = validate(bad.cfg);
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr("rate_limit.max_queue_total: must be at least 1")));
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr("client.max_connections: must be at least 1")));
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr("admin.allowed_hosts[0]")));
}

}  // namespace
}  // namespace okta_sidecar::config

// ---- the loader refuses exactly what the runtime refuses ----
// intercept_hosts, tunnel_hosts and access.allowed_clients are validated with the parsers the
// runtime builds its policy with (policy::parse_host_pattern, policy::parse_cidr), so a
// configuration that passes --check-config cannot fail at start or reload, and one that fails
// it cannot slip through. The same inputs go through both; `ok` pins what both should say.
namespace okta_sidecar::config {
namespace {

struct agreement_case {
  const char* text;
  bool ok;
};

bool runtime_accepts_hosts(const std::vector<std::string>& intercept,
                           const std::vector<std::string>& tunnel) {
  try {
    policy::host_policy(intercept, tunnel, {443});
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

bool runtime_accepts_clients(const std::vector<std::string>& clients) {
  try {
    policy::cidr_list::parse(clients);
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

TEST(LoaderAgreesWithRuntime, HostPatterns) {
  const agreement_case cases[] = {
      {"acme.okta.com", true},
      {"*.okta.com", true},
      {"*.OKTA.com:8443", true},
      {"ACME.okta.com", true},
      {"10.1.2.3", true},
      {"10.1.2.3:8443", true},
      {"[::1]", true},
      {"[2001:db8::5]:443", true},
      {"*.a.b.c", true},
      {"xn--bcher-kva.example", true},
      {"a-b.c", true},
      {"", false},
      {"*", false},
      {"*.", false},
      {"*.com", false},
      {"**.okta.com", false},
      {"a.*.okta.com", false},
      {"*okta.com", false},
      {"okta.*", false},
      {"*.10.0.0.1", false},
      {"localhost", false},
      {"LOCALHOST", false},
      {"*.localhost", false},
      {"api.localhost", false},
      {"127.1", false},
      {"2130706433", false},
      {"0x7f.0.0.1", false},
      {"acme.0x1", false},
      {"010.0.0.1", false},
      {"256.0.0.1", false},
      {"acme.okta.com.", false},
      {"acme..okta.com", false},
      {"-acme.okta.com", false},
      {"a_b.okta.com", false},
      {"a b.com", false},
      {"user@acme.okta.com", false},
      {"acme.okta.com/", false},
      {"https://acme.okta.com", false},
      {"acme.okta.com:", false},
      {"acme.okta.com:0", false},
      {"acme.okta.com:0443", false},
      {"acme.okta.com:65536", false},
      {"acme.okta.com:x", false},
      {"::1", false},
      {"[::1", false},
      {"[::1]x", false},
      {"[::1]:", false},
      {"[127.0.0.1]", false},
      {"[fe80::1%eth0]", false},
      {"[acme]", false},
      {"a%2eokta.com", false},
  };
  for (const auto& c : cases) {
    for (const bool tunnel : {false, true}) {
      config cfg;
      cfg.intercept_hosts = tunnel ? std::vector<std::string>{} : std::vector<std::string>{c.text};
      cfg.tunnel_hosts = tunnel ? std::vector<std::string>{c.text} : std::vector<std::string>{};
      const bool loader = validate(cfg).empty();
      const bool runtime = runtime_accepts_hosts(cfg.intercept_hosts, cfg.tunnel_hosts);
      EXPECT_EQ(loader, runtime) << c.text << (tunnel ? " in tunnel_hosts" : " in intercept_hosts");
      EXPECT_EQ(loader, c.ok) << c.text;
    }
  }
  std::string long_name;
  while (long_name.size() < 260) long_name += "abcdefgh.";
  for (const std::string& text :
       {long_name + "com", std::string(64, 'a') + ".com", std::string(63, 'a') + ".com"}) {
    config cfg;
    cfg.intercept_hosts = {text};
    EXPECT_EQ(validate(cfg).empty(), runtime_accepts_hosts(cfg.intercept_hosts, {})) << text;
  }
}

TEST(LoaderAgreesWithRuntime, Cidrs) {
  const agreement_case cases[] = {
      {"10.0.0.0/8", true},
      {"192.168.1.7", true},
      {"0.0.0.0/0", true},
      {"::/0", true},
      {"::1", true},
      {"fd00::/8", true},
      {"2001:db8::1/128", true},
      {"::ffff:10.0.0.0/104", true},
      {"10.1.2.3/32", true},
      {"", false},
      {"/8", false},
      {"10.0.0.0/", false},
      {"10.0.0.0/33", false},
      {"::/129", false},
      {"10.0.0.0/-1", false},
      {"10.0.0.0/+8", false},
      {"10.0.0.0/08", false},
      {"10.0.0.0/8/8", false},
      {"10.0.0.0/ 8", false},
      {" 10.0.0.0/8", false},
      {"10.0.0/8", false},
      {"010.0.0.0/8", false},
      {"10.0.0.1/8", false},
      {"fd00::1/8", false},
      {"fe80::1%eth0/64", false},
      {"fe80::1%eth0", false},
      {"office", false},
      {"example.com/24", false},
      {"10.0.0.0/8000", false},
      {"1:2:3:4:5:6:7:8:9", false},
  };
  for (const auto& c : cases) {
    config cfg;
    cfg.access.allowed_clients = {c.text};
    const bool loader = validate(cfg).empty();
    EXPECT_EQ(loader, runtime_accepts_clients(cfg.access.allowed_clients)) << c.text;
    EXPECT_EQ(loader, c.ok) << c.text;
  }
}

}  // namespace
}  // namespace okta_sidecar::config
