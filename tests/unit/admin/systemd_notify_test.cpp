#include "okta_sidecar/admin/systemd_notify.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

namespace okta_sidecar::admin {
namespace {

using namespace std::chrono_literals;

// A real AF_UNIX datagram socket standing in for the service manager's notify socket.
class notify_listener {
 public:
  // `abstract` binds "@okta-sidecar-test-<pid>-<n>" instead of a file path.
  explicit notify_listener(bool abstract) {
    static int counter = 0;
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    const std::string name =
        "okta-sidecar-notify-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t len;
    if (abstract) {
      address_ = "@" + name;
      std::memcpy(addr.sun_path + 1, name.data(), name.size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    } else {
      address_ = "/tmp/" + name + ".sock";
      path_ = address_;
      ::unlink(path_.c_str());
      std::memcpy(addr.sun_path, address_.data(), address_.size());
      len = static_cast<socklen_t>(sizeof addr);
    }
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0) << std::strerror(errno);
    timeval tv{5, 0};  // a missing datagram fails the test instead of hanging it
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~notify_listener() {
    ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const std::string& address() const { return address_; }

  std::optional<std::string> receive() {
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }

 private:
  int fd_ = -1;
  std::string address_;
  std::string path_;
};

class SystemdNotify : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
  }
  void TearDown() override { SetUp(); }
};

TEST_F(SystemdNotify, EveryCallIsANoOpWithoutNotifySocket) {
  EXPECT_FALSE(notify_ready());
  EXPECT_FALSE(notify_stopping());
  EXPECT_FALSE(notify_reloading());
  EXPECT_FALSE(notify_reloaded());
  EXPECT_FALSE(notify_watchdog());
  EXPECT_FALSE(notify_status("x"));
  ::setenv("NOTIFY_SOCKET", "", 1);
  EXPECT_FALSE(notify_ready());
}

TEST_F(SystemdNotify, ReadyReachesAPathSocket) {
  notify_listener l(false);
  ::setenv("NOTIFY_SOCKET", l.address().c_str(), 1);
  ASSERT_TRUE(notify_ready());
  const auto msg = l.receive();
  ASSERT_TRUE(msg);
  EXPECT_EQ(msg->substr(0, 8), "READY=1\n");
}

TEST_F(SystemdNotify, ReachesAnAbstractSocket) {
  notify_listener l(true);
  ::setenv("NOTIFY_SOCKET", l.address().c_str(), 1);
  ASSERT_TRUE(notify_stopping());
  const auto msg = l.receive();
  ASSERT_TRUE(msg);
  EXPECT_EQ(msg->substr(0, 11), "STOPPING=1\n");
}

TEST_F(SystemdNotify, MessagesCarryTheDocumentedAssignments) {
  notify_listener l(false);
  ::setenv("NOTIFY_SOCKET", l.address().c_str(), 1);
  ASSERT_TRUE(notify_watchdog());
  EXPECT_EQ(l.receive(), "WATCHDOG=1");
  ASSERT_TRUE(notify_status("draining\n3 in flight"));
  EXPECT_EQ(l.receive(), "STATUS=draining 3 in flight");  // newline cannot inject a key
  ASSERT_TRUE(notify_reloaded());
  EXPECT_EQ(l.receive(), "READY=1\nSTATUS=serving");
}

TEST_F(SystemdNotify, ReloadingCarriesTheCurrentMonotonicTime) {
  notify_listener l(false);
  ::setenv("NOTIFY_SOCKET", l.address().c_str(), 1);
  auto now_usec = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
  };
  const auto before = now_usec();
  ASSERT_TRUE(notify_reloading());
  const auto after = now_usec();
  const auto msg = l.receive();
  ASSERT_TRUE(msg);
  ASSERT_EQ(msg->rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << *msg;
  const auto start = std::strlen("RELOADING=1\nMONOTONIC_USEC=");
  const auto stamp = std::stoull(msg->substr(start, msg->find('\n', start) - start));
  EXPECT_GE(stamp, before);
  EXPECT_LE(stamp, after);
}

TEST_F(SystemdNotify, SendNotifyRejectsBadAddressesAndReportsMissingSockets) {
  EXPECT_EQ(send_notify("relative/path", "READY=1"), std::errc::invalid_argument);
  EXPECT_EQ(send_notify("@", "READY=1"), std::errc::invalid_argument);
  EXPECT_EQ(send_notify("/" + std::string(200, 'x'), "READY=1"), std::errc::filename_too_long);
  EXPECT_TRUE(send_notify("/nonexistent/okta-sidecar/notify.sock", "READY=1"));
  ::setenv("NOTIFY_SOCKET", "/nonexistent/okta-sidecar/notify.sock", 1);
  EXPECT_FALSE(notify_ready());
}

struct watchdog_case {
  const char* usec;  // nullptr = unset
  const char* pid;   // "self" = our pid; nullptr = unset
  std::optional<std::chrono::microseconds> expected;
};
class SystemdWatchdogInterval : public SystemdNotify, public ::testing::WithParamInterface<watchdog_case> {};
TEST_P(SystemdWatchdogInterval, IsHalfThePeriodForThisProcessOnly) {
  const auto& p = GetParam();
  if (p.usec) ::setenv("WATCHDOG_USEC", p.usec, 1);
  if (p.pid) {
    const std::string pid = std::string(p.pid) == "self" ? std::to_string(::getpid()) : p.pid;
    ::setenv("WATCHDOG_PID", pid.c_str(), 1);
  }
  EXPECT_EQ(watchdog_interval(), p.expected);
}
INSTANTIATE_TEST_SUITE_P(
    Table, SystemdWatchdogInterval,
    ::testing::Values(watchdog_case{nullptr, nullptr, std::nullopt},
                      watchdog_case{"30000000", nullptr, std::chrono::microseconds(15000000)},
                      watchdog_case{"30000000", "self", std::chrono::microseconds(15000000)},
                      watchdog_case{"30000000", "1", std::nullopt},  // meant for pid 1
                      watchdog_case{"30000000", "abc", std::nullopt},
                      watchdog_case{"1", nullptr, std::chrono::microseconds(0)},
                      watchdog_case{"0", nullptr, std::nullopt}, watchdog_case{"", nullptr, std::nullopt},
                      watchdog_case{"-5", nullptr, std::nullopt},
                      watchdog_case{"12x", nullptr, std::nullopt}));

TEST_F(SystemdNotify, PingerSendsWatchdogRepeatedlyUntilStopped) {
  notify_listener l(false);
  ::setenv("NOTIFY_SOCKET", l.address().c_str(), 1);
  boost::asio::io_context ioc;
  watchdog_pinger p(ioc, std::chrono::microseconds(20000));
  ASSERT_TRUE(p.enabled());
  p.start();
  std::thread runner([&] { ioc.run(); });
  EXPECT_EQ(l.receive(), "WATCHDOG=1");  // at once
  EXPECT_EQ(l.receive(), "WATCHDOG=1");  // and again after an interval
  p.stop();
  // The loop ends, so run() returns (nothing else keeps the context busy); a pinger that
  // ignored stop() would hang here and the test would time out.
  runner.join();
}

TEST_F(SystemdNotify, PingerWithoutWatchdogDoesNothing) {
  boost::asio::io_context ioc;
  watchdog_pinger p(ioc, watchdog_interval());
  EXPECT_FALSE(p.enabled());
  p.start();
  EXPECT_EQ(ioc.run_for(50ms), 0u);
}

}  // namespace
}  // namespace okta_sidecar::admin
