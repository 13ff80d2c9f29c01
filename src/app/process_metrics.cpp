#include "okta_sidecar/app/process_metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace okta_sidecar::app {
namespace {

std::string read_small_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<double> number(std::string_view s) {
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p == s.data()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<proc_stat> parse_proc_stat(std::string_view text, long ticks_per_second) {
  // proc(5): "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so fields are
  // counted from the last ')'. After it, field 3 (state) is the first; utime and stime are
  // fields 14 and 15, starttime is field 22 (all in clock ticks).
  const auto close = text.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0) return std::nullopt;
  std::vector<std::string_view> fields;
  std::size_t i = close + 1;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n')) ++i;
    const std::size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\n') ++i;
    if (i > start) fields.push_back(text.substr(start, i - start));
  }
  // fields[0] is field 3 of proc(5), so field N is fields[N - 3].
  if (fields.size() < 20) return std::nullopt;
  auto utime = number(fields[14 - 3]), stime = number(fields[15 - 3]), start = number(fields[22 - 3]);
  if (!utime || !stime || !start) return std::nullopt;
  const double hz = static_cast<double>(ticks_per_second);
  return proc_stat{(*utime + *stime) / hz, *start / hz};
}

std::optional<double> parse_boot_time(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    auto line = text.substr(pos, end - pos);
    if (line.starts_with("btime ")) return number(line.substr(6));
    pos = end + 1;
  }
  return std::nullopt;
}

void add_process_metrics(metrics::registry& r, std::string_view version) {
  using samples = std::vector<metrics::registry::sample>;
  const long hz = ::sysconf(_SC_CLK_TCK);
  const long page = ::sysconf(_SC_PAGESIZE);
  r.add_callback_gauge("okta_sidecar_build_info", "Always 1; the labels say which build is running",
                       {"version"}, [v = std::string(version)]() {
                         return samples{{{v}, 1.0}};
                       });
  r.add_callback_counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds", {},
                         [hz]() {
                           auto st = parse_proc_stat(read_small_file("/proc/self/stat"), hz);
                           return st ? samples{{{}, st->cpu_seconds}} : samples{};
                         });
  // The start time does not change; it is computed once, at registration.
  const auto st = parse_proc_stat(read_small_file("/proc/self/stat"), hz);
  const auto boot = parse_boot_time(read_small_file("/proc/stat"));
  const std::optional<double> start =
      st && boot ? std::optional<double>(*boot + st->start_seconds_since_boot) : std::nullopt;
  r.add_callback_gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds",
                       {}, [start]() {
                         return start ? samples{{{}, *start}} : samples{};
                       });
  auto statm = [page](std::size_t field) -> std::optional<double> {
    // statm(5): size resident shared ... in pages.
    std::istringstream in(read_small_file("/proc/self/statm"));
    double v = 0;
    for (std::size_t i = 0; i <= field; ++i) {
      if (!(in >> v)) return std::nullopt;
    }
    return v * static_cast<double>(page);
  };
  r.add_callback_gauge("process_resident_memory_bytes", "Resident memory size in bytes", {}, [statm]() {
    auto v = statm(1);
    return v ? samples{{{}, *v}} : samples{};
  });
  r.add_callback_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes", {}, [statm]() {
    auto v = statm(0);
    return v ? samples{{{}, *v}} : samples{};
  });
  r.add_callback_gauge("process_open_fds", "Number of open file descriptors", {}, []() {
    std::error_code ec;
    double n = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
         it.increment(ec)) {
      ++n;
    }
    // The directory iterator's own descriptor is one of them.
    return ec ? samples{} : samples{{{}, n > 0 ? n - 1 : 0}};
  });
  r.add_callback_gauge("process_max_fds", "Maximum number of open file descriptors", {}, []() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return samples{};
    return samples{{{}, static_cast<double>(lim.rlim_cur)}};
  });
}

}  // namespace okta_sidecar::app
