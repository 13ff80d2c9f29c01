#include "okta_sidecar/config/cli.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace okta_sidecar::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

cli_result parse(std::vector<std::string_view> args) {
  return parse_cli(std::span<const std::string_view>(args));
}

TEST(ParseCli, NoArgumentsMeansDefaults) {
  auto r = parse({});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.options, cli_options{});
}

TEST(ParseCli, EveryFlagWithSeparateValue) {
  auto r = parse({"--config", "/etc/s.json", "--listen", "0.0.0.0:3128", "--admin-listen", "[::1]:9901",
                  "--state-dir", "/var/lib/s", "--log-level", "debug", "--log-format", "text",
                  "--check-config", "--version", "--help"});
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.options.config_file, "/etc/s.json");
  EXPECT_EQ(r.options.listen, "0.0.0.0:3128");
  EXPECT_EQ(r.options.admin_listen, "[::1]:9901");
  EXPECT_EQ(r.options.state_dir, "/var/lib/s");
  EXPECT_EQ(r.options.log_level, "debug");
  EXPECT_EQ(r.options.log_format, "text");
  EXPECT_TRUE(r.options.check_config);
  EXPECT_TRUE(r.options.version);
  EXPECT_TRUE(r.options.help);
}

TEST(ParseCli, EveryFlagWithEqualsForm) {
  auto r = parse({"--config=/etc/s.json", "--listen=0.0.0.0:3128", "--admin-listen=[::1]:9901",
                  "--state-dir=/var/lib/s", "--log-level=warn", "--log-format=json"});
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.options.config_file, "/etc/s.json");
  EXPECT_EQ(r.options.listen, "0.0.0.0:3128");
  EXPECT_EQ(r.options.admin_listen, "[::1]:9901");
  EXPECT_EQ(r.options.state_dir, "/var/lib/s");
  EXPECT_EQ(r.options.log_level, "warn");
  EXPECT_EQ(r.options.log_format, "json");
  EXPECT_FALSE(r.options.check_config);
}

TEST(ParseCli, EqualsFormKeepsLaterEqualsSigns) {
  auto r = parse({"--config=/tmp/a=b.json"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.options.config_file, "/tmp/a=b.json");
}

TEST(ParseCli, ShortHelpAndRepeatedFlagKeepsTheLast) {
  auto r = parse({"-h", "--listen", "127.0.0.1:1", "--listen=127.0.0.1:2"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.options.help);
  EXPECT_EQ(r.options.listen, "127.0.0.1:2");
}

TEST(ParseCli, ValueMayStartWithASingleDash) {
  auto r = parse({"--config", "-"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.options.config_file, "-");
}

struct cli_error_case {
  std::string_view name;
  std::vector<std::string_view> args;
  std::string_view error;
};

class ParseCliErrors : public ::testing::TestWithParam<cli_error_case> {};

TEST_P(ParseCliErrors, SayWhatIsWrong) {
  auto r = parse(GetParam().args);
  EXPECT_THAT(r.errors, ElementsAre(std::string(GetParam().error)));
}

INSTANTIATE_TEST_SUITE_P(
    Cli, ParseCliErrors,
    ::testing::Values(
        cli_error_case{"MissingValueAtEnd", {"--config"}, "--config: missing value (expected --config FILE)"},
        cli_error_case{"MissingValueBeforeFlag",
                       {"--listen", "--check-config"},
                       "--listen: missing value (expected --listen HOST:PORT)"},
        cli_error_case{
            "EmptyEqualsValue", {"--state-dir="}, "--state-dir: empty value (expected --state-dir DIR)"},
        cli_error_case{"EmptySeparateValue",
                       {"--log-level", ""},
                       "--log-level: empty value (expected --log-level LEVEL)"},
        cli_error_case{"UnknownFlagSwallowsItsValue",
                       {"--lissten", "x"},
                       "--lissten: unknown option (did you mean --listen?); see --help"},
        cli_error_case{"UnknownFlagEqualsForm",
                       {"--admin_listen=127.0.0.1:1"},
                       "--admin_listen: unknown option (did you mean --admin-listen?); see --help"},
        cli_error_case{
            "UnknownFlagNoSuggestion", {"--frobnicate"}, "--frobnicate: unknown option; see --help"},
        cli_error_case{"SingleDashLongFlag",
                       {"-config"},
                       "\"-config\": unexpected argument (options start with --; see --help)"},
        cli_error_case{"Positional",
                       {"okta-sidecar.json"},
                       "\"okta-sidecar.json\": unexpected argument (options start with --; see "
                       "--help)"},
        cli_error_case{
            "SwitchWithValue", {"--check-config=yes"}, "--check-config: takes no value, got \"yes\""},
        cli_error_case{"BareDoubleDash", {"--"}, "--: unknown option; see --help"}),
    [](const ::testing::TestParamInfo<cli_error_case>& info) { return std::string(info.param.name); });

TEST(ParseCli, UnknownFlagSuggestsTheClosest) {
  auto r = parse({"--lissten=1"});
  EXPECT_THAT(r.errors, ElementsAre("--lissten: unknown option (did you mean --listen?); see --help"));
  r = parse({"--check"});
  EXPECT_THAT(r.errors, ElementsAre("--check: unknown option (did you mean --check-config?); see --help"));
}

TEST(ParseCli, UnknownSwitchTypoDoesNotSwallowTheNextArgument) {
  auto r = parse({"--versoin", "x"});
  EXPECT_THAT(r.errors, ElementsAre("--versoin: unknown option (did you mean --version?); see --help",
                                    "\"x\": unexpected argument (options start with --; see --help)"));
}

TEST(ParseCli, CollectsEveryError) {
  auto r = parse({"--bogus", "stray", "--version=1", "--config"});
  EXPECT_EQ(r.errors.size(), 4u);
}

TEST(ParseCli, ArgcArgvSkipsTheProgramName) {
  const char* argv[] = {"okta-sidecar", "--check-config", "--listen=127.0.0.1:5"};
  auto r = parse_cli(3, argv);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.options.check_config);
  EXPECT_EQ(r.options.listen, "127.0.0.1:5");
}

TEST(UsageText, MentionsEveryFlagAndEnvironmentVariable) {
  const std::string u = usage_text();
  for (std::string_view s :
       {"--config FILE", "--listen HOST:PORT", "--admin-listen HOST:PORT", "--state-dir DIR",
        "--log-level LEVEL", "--log-format FORMAT", "--check-config", "--version", "--help",
        "trace, debug, info, warn or error", "json or text", "127.0.0.1:3128", "127.0.0.1:9901",
        "OKTA_SIDECAR_CONFIG", "OKTA_SIDECAR_LISTEN", "OKTA_SIDECAR_ADMIN_LISTEN", "OKTA_SIDECAR_STATE_DIR",
        "OKTA_SIDECAR_LOG_LEVEL", "OKTA_SIDECAR_LOG_FORMAT"}) {
    EXPECT_THAT(u, HasSubstr(std::string(s)));
  }
}

// ---- build_config ----

// A scratch directory for config files, removed at the end of each test.
class BuildConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("okta-sidecar-config-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, std::string_view text) {
    auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  env_lookup env_of(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
      auto it = vars.find(std::string(name));
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }

  std::filesystem::path dir_;
};

TEST_F(BuildConfig, NothingGivenYieldsFinalizedDefaults) {
  auto r = build_config({}, env_of({}));
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  config expected;
  finalize(expected);
  EXPECT_EQ(r.cfg, expected);
}

TEST_F(BuildConfig, NullEnvLookupIsAllowed) {
  auto r = build_config({}, env_lookup{});
  EXPECT_TRUE(r.ok());
}

TEST_F(BuildConfig, ReadsTheFileNamedOnTheCommandLine) {
  cli_options o;
  o.config_file = write("s.json", R"({"threads": 3, "state_dir": "/srv/s"})");
  auto r = build_config(o, env_of({}));
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg.threads, 3u);
  EXPECT_EQ(r.cfg.ca.cert_file, "/srv/s/ca.crt");
}

TEST_F(BuildConfig, ReadsTheFileNamedInTheEnvironment) {
  auto r = build_config({}, env_of({{"OKTA_SIDECAR_CONFIG", write("e.json", R"({"threads": 5})")}}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.cfg.threads, 5u);
}

TEST_F(BuildConfig, CommandLineFileBeatsEnvironmentFile) {
  cli_options o;
  o.config_file = write("cli.json", R"({"threads": 1})");
  auto r = build_config(o, env_of({{"OKTA_SIDECAR_CONFIG", write("env.json", R"({"threads": 2})")}}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.cfg.threads, 1u);
}

TEST_F(BuildConfig, MissingFileIsAnErrorNamingThePath) {
  cli_options o;
  o.config_file = (dir_ / "nope.json").string();
  auto r = build_config(o, env_of({}));
  EXPECT_THAT(r.errors, ElementsAre("--config: cannot read config file \"" + *o.config_file +
                                    "\": No such file or directory"));
  r = build_config({}, env_of({{"OKTA_SIDECAR_CONFIG", *o.config_file}}));
  EXPECT_THAT(r.errors, ElementsAre("OKTA_SIDECAR_CONFIG: cannot read config file \"" + *o.config_file +
                                    "\": No such file or directory"));
}

TEST_F(BuildConfig, DirectoryIsNotAConfigFile) {
  cli_options o;
  o.config_file = dir_.string();
  auto r = build_config(o, env_of({}));
  EXPECT_THAT(r.errors,
              ElementsAre("--config: cannot read config file \"" + dir_.string() + "\": is a directory"));
}

TEST_F(BuildConfig, FileErrorsNameTheFileAndKeys) {
  cli_options o;
  o.config_file = write("bad.json", "{\n  \"threads\": 1,\n  \"upstream\": {\"resolv\": {}}\n}\n");
  auto r = build_config(o, env_of({}));
  EXPECT_THAT(r.errors, ElementsAre("upstream.resolv: unknown key (did you mean \"resolve\"?)"));
  o.config_file = write("syntax.json", "{\n  \"threads\": 1\n  \"x\": 2\n}\n");
  r = build_config(o, env_of({}));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0], HasSubstr(*o.config_file + ":3:5: invalid JSON"));
}

TEST_F(BuildConfig, ValidationErrorsAreIncluded) {
  cli_options o;
  o.config_file = write("v.json", R"({"threads": 999, "retry": {"max_attempts": 0}})");
  auto r = build_config(o, env_of({}));
  EXPECT_THAT(r.errors, ElementsAre("threads: must be at most 256, got 999 (0 means one per core)",
                                    "retry.max_attempts: must be at least 1, got 0 (1 means no retries)"));
}

TEST_F(BuildConfig, PrecedenceIsCliThenEnvThenFileThenDefaults) {
  cli_options o;
  o.config_file = write("p.json", R"({
    "listen": "127.0.0.1:1001", "admin_listen": "127.0.0.1:2001", "state_dir": "/file",
    "log": {"level": "warn", "format": "text"}})");
  // File only.
  auto r = build_config(o, env_of({}));
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg.listen.port, 1001);
  EXPECT_EQ(r.cfg.admin_listen.port, 2001);
  EXPECT_EQ(r.cfg.state_dir, "/file");
  EXPECT_EQ(r.cfg.log.level, "warn");
  EXPECT_EQ(r.cfg.log.format, "text");

  // Environment beats the file.
  auto env = env_of({{"OKTA_SIDECAR_LISTEN", "127.0.0.1:1002"},
                     {"OKTA_SIDECAR_ADMIN_LISTEN", "127.0.0.1:2002"},
                     {"OKTA_SIDECAR_STATE_DIR", "/env"},
                     {"OKTA_SIDECAR_LOG_LEVEL", "error"},
                     {"OKTA_SIDECAR_LOG_FORMAT", "json"}});
  r = build_config(o, env);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg.listen.port, 1002);
  EXPECT_EQ(r.cfg.admin_listen.port, 2002);
  EXPECT_EQ(r.cfg.state_dir, "/env");
  EXPECT_EQ(r.cfg.ca.cert_file, "/env/ca.crt");
  EXPECT_EQ(r.cfg.log.level, "error");
  EXPECT_EQ(r.cfg.log.format, "json");

  // The command line beats both.
  o.listen = "127.0.0.1:1003";
  o.admin_listen = "[::1]:2003";
  o.state_dir = "/cli";
  o.log_level = "trace";
  o.log_format = "text";
  r = build_config(o, env);
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg.listen, (endpoint{"127.0.0.1", 1003}));
  EXPECT_EQ(r.cfg.admin_listen, (endpoint{"::1", 2003}));
  EXPECT_EQ(r.cfg.state_dir, "/cli");
  EXPECT_EQ(r.cfg.ca.key_file, "/cli/ca.key");
  EXPECT_EQ(r.cfg.log.level, "trace");
  EXPECT_EQ(r.cfg.log.format, "text");
}

TEST_F(BuildConfig, EmptyEnvironmentVariablesCountAsUnset) {
  auto r = build_config(
      {}, env_of({{"OKTA_SIDECAR_CONFIG", ""}, {"OKTA_SIDECAR_LISTEN", ""}, {"OKTA_SIDECAR_LOG_LEVEL", ""}}));
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_EQ(r.cfg.listen.port, 3128);
  EXPECT_EQ(r.cfg.log.level, "info");
}

TEST_F(BuildConfig, ExplicitCaFilesSurviveAStateDirOverride) {
  cli_options o;
  o.config_file = write("ca.json", R"({"ca": {"cert_file": "/pki/ca.crt"}})");
  o.state_dir = "/cli";
  auto r = build_config(o, env_of({}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.cfg.ca.cert_file, "/pki/ca.crt");
  EXPECT_EQ(r.cfg.ca.key_file, "/cli/ca.key");
}

TEST_F(BuildConfig, MissingExplicitCaFilesAreErrorsNamingTheKey) {
  cli_options o;
  o.config_file = write("ca.json", R"({"ca": {"cert_file": ")" + (dir_ / "pki/ca.crt").string() + R"("}})");
  o.state_dir = (dir_ / "state").string();
  auto r = build_config(o, env_of({}));
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(check_ca_files(r.cfg),
              ::testing::ElementsAre(
                  HasSubstr("ca.cert_file: \"" + (dir_ / "pki/ca.crt").string() + "\" does not exist")));
  // The key stays at its default, which is created on first start: no error for it.
  write("ca.crt", "x");
  r.cfg.ca.cert_file = (dir_ / "ca.crt").string();
  EXPECT_THAT(check_ca_files(r.cfg), IsEmpty());
  r.cfg.ca.key_file = (dir_ / "nowhere.key").string();
  EXPECT_THAT(check_ca_files(r.cfg), ::testing::ElementsAre(HasSubstr("ca.key_file: ")));
  r.cfg.ca.create_if_missing = true;
  EXPECT_THAT(check_ca_files(r.cfg), IsEmpty());
}

TEST_F(BuildConfig, DefaultCaFilesNeedNotExist) {
  cli_options o;
  o.state_dir = (dir_ / "not-yet").string();
  auto r = build_config(o, env_of({}));
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(check_ca_files(r.cfg), IsEmpty());
}

TEST(ParseCli, PrintConfigIsASwitch) {
  auto r = parse({"--print-config"});
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(r.errors);
  EXPECT_TRUE(r.options.print_config);
  EXPECT_THAT(usage_text(), HasSubstr("--print-config"));
}

TEST_F(BuildConfig, BadOverridesNameTheirSource) {
  cli_options o;
  o.listen = "localhost";
  o.log_format = "xml";
  auto r = build_config(o, env_of({{"OKTA_SIDECAR_ADMIN_LISTEN", "[::1]"},
                                   {"OKTA_SIDECAR_LOG_LEVEL", "warning"},
                                   {"OKTA_SIDECAR_LOG_FORMAT", "text"}}));
  EXPECT_THAT(r.errors, ElementsAre("--listen: \"localhost\" has no port; expected HOST:PORT, e.g. "
                                    "\"127.0.0.1:3128\"",
                                    "OKTA_SIDECAR_ADMIN_LISTEN: \"[::1]\" has no port; expected "
                                    "[IPv6]:PORT, e.g. \"[::1]:3128\"",
                                    "OKTA_SIDECAR_LOG_LEVEL: \"warning\" is not one of trace, debug, info, "
                                    "warn, error (did you mean \"warn\"?)",
                                    "--log-format: \"xml\" is not one of json, text"));
  // A rejected override does not fall back to a lower layer silently: the value is untouched.
  EXPECT_EQ(r.cfg.log.format, "json");
}

TEST_F(BuildConfig, OverridesAreValidatedTogetherWithTheFile) {
  cli_options o;
  o.config_file = write("c.json", R"({"admin_listen": "127.0.0.1:4000"})");
  o.listen = "127.0.0.1:4000";
  auto r = build_config(o, env_of({}));
  EXPECT_THAT(r.errors, ElementsAre("admin_listen: \"127.0.0.1:4000\" collides with listen "
                                    "\"127.0.0.1:4000\"; give them different ports"));
}

TEST(ProcessEnvironment, ReadsTheRealEnvironment) {
  ::setenv("OKTA_SIDECAR_TEST_VARIABLE", "value", 1);
  auto env = process_environment();
  EXPECT_EQ(env("OKTA_SIDECAR_TEST_VARIABLE"), "value");
  ::unsetenv("OKTA_SIDECAR_TEST_VARIABLE");
  EXPECT_EQ(env("OKTA_SIDECAR_TEST_VARIABLE"), std::nullopt);
}

}  // namespace
}  // namespace okta_sidecar::config
