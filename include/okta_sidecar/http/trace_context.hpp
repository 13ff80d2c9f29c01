#pragma once
// W3C Trace Context (https://www.w3.org/TR/trace-context/#traceparent-header): the trace id
// of a `traceparent` field, so an access-log line can be joined with the app's traces.
#include <optional>
#include <string>
#include <string_view>

namespace okta_sidecar::http {

// "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" -> "4bf92f3577b34da6a3ce929d0e0e4736".
// nullopt for anything malformed: wrong lengths, upper-case or non-hex digits, version ff, an
// all-zero trace or parent id (the spec's invalid values). Later versions may append fields
// after the flags ("-..."); version 00 may not.
std::optional<std::string> trace_id_of(std::string_view traceparent);

}  // namespace okta_sidecar::http
