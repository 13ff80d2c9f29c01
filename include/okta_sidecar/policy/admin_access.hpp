#pragma once
// Who may read what on the admin port (issue 14). Probes and scrapers need /healthz, /readyz,
// /metrics and the CA certificate; /status, the dashboard and configuration dumps show client
// ids, token fingerprints and paths, so only loopback peers see them unless the operator opts
// in. Every request must name the admin server by an IP literal, "localhost" or a configured
// name: a web page that rebinds its own DNS name to 127.0.0.1 cannot read the port.
#include <string>
#include <string_view>
#include <vector>

namespace okta_sidecar::policy {

struct admin_access_settings {
  bool expose_status = false;              // admin.expose_status
  std::vector<std::string> allowed_hosts;  // admin.allowed_hosts (names, no port)
};

enum class admin_verdict {
  allow,
  bad_host,       // Host names something else (DNS rebinding)
  loopback_only,  // a detailed page asked for by a non-loopback peer
};

// Paths any peer that reaches the port may read.
bool is_probe_path(std::string_view path);

// `path` without the query; `host_header` as received ("" when absent: HTTP/1.0 probes send
// none, and a browser always sends one); `peer_loopback` for 127.0.0.0/8, ::1 and v4-mapped
// loopback peers.
admin_verdict decide_admin_access(std::string_view path, std::string_view host_header, bool peer_loopback,
                                  const admin_access_settings& s);

}  // namespace okta_sidecar::policy
