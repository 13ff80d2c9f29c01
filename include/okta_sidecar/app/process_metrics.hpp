#pragma once
// The standard process_* metrics (Prometheus client convention, as the Go and Python clients
// export them) and okta_sidecar_build_info, read from /proc/self at scrape time.
#include <optional>
#include <string_view>

#include "okta_sidecar/metrics/registry.hpp"

namespace okta_sidecar::app {

// What /proc/self/stat says, in seconds; nullopt when the text does not parse.
struct proc_stat {
  double cpu_seconds = 0;  // utime + stime
  double start_seconds_since_boot = 0;
};
std::optional<proc_stat> parse_proc_stat(std::string_view text, long ticks_per_second);
// "btime N" from /proc/stat: the boot time in epoch seconds.
std::optional<double> parse_boot_time(std::string_view proc_stat_text);

// Registers process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
// process_max_fds, process_cpu_seconds_total, process_start_time_seconds and
// okta_sidecar_build_info{version}.
void add_process_metrics(metrics::registry& r, std::string_view version);

}  // namespace okta_sidecar::app
