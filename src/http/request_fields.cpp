#include "okta_sidecar/http/request_fields.hpp"

namespace okta_sidecar::http {

namespace {

// The first field of a name wins, as a lookup by name would give it, even with an empty value
// (a slot not yet filled is the null default view: see request_fields).
void first(std::string_view& slot, std::string_view value) {
  if (slot.data() == nullptr) slot = value;
}

}  // namespace

request_fields read_request_fields(std::span<const header_view> fields) {
  request_fields out;
  for (const auto& [name, value] : fields) {
    // By length first: most names have a length that no name read here has.
    switch (name.size()) {
      case 4:
        if (iequals(name, "host")) first(out.host, value);
        break;
      case 5:
        if (iequals(name, "range")) out.conditional = true;
        break;
      case 6:
        if (iequals(name, "cookie")) {
          first(out.cookie, value);
        } else if (iequals(name, "expect")) {
          first(out.expect, value);
        } else if (iequals(name, "accept")) {
          first(out.accept, value);
        } else if (iequals(name, "pragma")) {
          first(out.pragma, value);
        }
        break;
      case 8:
        if (iequals(name, "if-match") || iequals(name, "if-range")) out.conditional = true;
        break;
      case 10:
        if (iequals(name, "connection")) {
          for_each_element(value, [&out](std::string_view option) {
            if (iequals(option, "close")) out.connection_close = true;
            if (iequals(option, "keep-alive")) out.connection_keep_alive = true;
          });
        }
        break;
      case 11:
        if (iequals(name, "traceparent")) first(out.traceparent, value);
        break;
      case 13:
        if (iequals(name, "authorization")) {
          first(out.authorization, value);
        } else if (iequals(name, "cache-control")) {
          first(out.cache_control, value);
        } else if (iequals(name, "if-none-match")) {
          out.conditional = true;
        }
        break;
      case 15:
        if (iequals(name, "accept-encoding")) {
          first(out.accept_encoding, value);
        } else if (iequals(name, "accept-language")) {
          first(out.accept_language, value);
        }
        break;
      case 16:
        if (iequals(name, "x-okta-retry-for")) out.has_retry_for = true;
        break;
      case 17:
        if (iequals(name, "if-modified-since")) out.conditional = true;
        break;
      case 18:
        if (iequals(name, "x-okta-retry-count")) first(out.retry_count, value);
        break;
      case 19:
        if (iequals(name, "proxy-authorization")) {
          first(out.proxy_authorization, value);
        } else if (iequals(name, "if-unmodified-since")) {
          out.conditional = true;
        }
        break;
      case 26:
        if (iequals(name, "x-okta-sidecar-max-wait-ms")) first(out.max_wait, value);
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace okta_sidecar::http
