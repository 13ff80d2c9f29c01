#include "okta_sidecar/http/target.hpp"

#include "okta_sidecar/http/ip_literal.hpp"
#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::http {

namespace {

// reg-name characters we accept in a host: RFC 3986 allows more (sub-delims, %-escapes), but
// no DNS name needs them and each extra form is another way to disagree with a resolver.
bool is_host_char(char c) { return char_class::has(c, char_class::host); }

// host[:port] or [v6][:port]; `port_required` for authority-form.
std::optional<host_and_port> parse_host_port(std::string_view text, bool port_required) {
  host_and_port out;
  std::string_view host, rest;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const auto v6 = parse_ipv6(text.substr(1, close - 1));
    if (!v6) return std::nullopt;
    out.host = v6->to_string();
    rest = text.substr(close + 1);
  } else {
    const auto colon = text.find(':');
    host = text.substr(0, colon);
    if (host.empty()) return std::nullopt;
    out.host.resize(host.size());  // lower-cased as it is checked
    for (std::size_t i = 0; i < host.size(); ++i) {
      if (!is_host_char(host[i])) return std::nullopt;
      out.host[i] = ascii_lower(host[i]);
    }
    rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
  }
  if (!rest.empty()) {
    if (rest[0] != ':') return std::nullopt;
    out.port = parse_port(rest.substr(1));
    if (!out.port) return std::nullopt;
  } else if (port_required) {
    return std::nullopt;
  }
  return out;
}

bool is_path_char(char c) { return char_class::has(c, char_class::path); }

// Where an absolute-form target's "://" is (npos without one): at its first ':', after the
// scheme. One memchr, where find("://") compares at every ':' and more.
std::size_t scheme_end(std::string_view target) {
  const auto colon = target.find(':');
  return colon != std::string_view::npos && target.substr(colon, 3) == "://" ? colon : std::string_view::npos;
}

}  // namespace

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  unsigned v = 0;
  for (char c : text) {
    if (!is_digit(c)) return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

bool is_valid_origin_form(std::string_view target) {
  if (target.empty() || target[0] != '/') return false;
  std::size_t i = 0;
  while (i + 8 <= target.size() && !swar::maybe_not_plain_path(swar::load(target.data() + i))) i += 8;
  for (; i < target.size(); ++i) {
    const char c = target[i];
    if (!is_path_char(c)) return false;
    if (c == '%') {
      if (i + 2 >= target.size() || !is_hex_digit(target[i + 1]) || !is_hex_digit(target[i + 2]))
        return false;
    }
  }
  return true;
}

std::string_view absolute_form_authority(std::string_view target) {
  const auto sep = scheme_end(target);
  if (sep == std::string_view::npos) return {};
  // Three memchr calls: libstdc++'s find_first_of calls memchr per character, a hand loop
  // costs about eight instructions a character.
  std::string_view authority = target.substr(sep + 3);
  authority = authority.substr(0, authority.find('/'));
  authority = authority.substr(0, authority.find('?'));
  return authority.substr(0, authority.find('#'));
}

std::optional<parsed_target> parse_absolute_form(std::string_view target) {
  const auto sep = scheme_end(target);
  if (sep == std::string_view::npos) return std::nullopt;
  parsed_target out;
  const std::string_view scheme = target.substr(0, sep);
  if (iequals(scheme, "http")) {
    out.scheme = "http";
  } else if (iequals(scheme, "https")) {
    out.scheme = "https";
  } else {
    return std::nullopt;
  }
  const std::string_view authority = absolute_form_authority(target);
  if (authority.find('@') != std::string_view::npos) return std::nullopt;  // userinfo
  auto hp = parse_host_port(authority, false);
  if (!hp) return std::nullopt;
  out.host = std::move(hp->host);
  out.port = hp->port.value_or(out.scheme == "https" ? 443 : 80);
  out.explicit_port = hp->port.has_value();
  const std::string_view path = target.substr(sep + 3 + authority.size());
  if (path.empty()) {
    out.path_and_query = "/";
  } else if (path[0] == '?') {
    out.path_and_query = "/";
    out.path_and_query += path;
  } else {
    out.path_and_query = path;
  }
  if (!is_valid_origin_form(out.path_and_query)) return std::nullopt;
  return out;
}

std::optional<std::pair<std::string, std::uint16_t>> parse_authority(std::string_view authority) {
  if (authority.find('@') != std::string_view::npos) return std::nullopt;
  const auto hp = parse_host_port(authority, true);
  if (!hp) return std::nullopt;
  return std::pair{hp->host, *hp->port};
}

std::optional<host_and_port> parse_host_header(std::string_view value) {
  return parse_host_port(trim_ows(value), false);
}

bool host_header_matches(std::string_view host_value, const parsed_target& target) {
  const auto hp = parse_host_port(trim_ows(host_value), false);
  return hp && host_header_matches(*hp, target);
}

bool host_header_matches(const host_and_port& host, const parsed_target& target) {
  const std::uint16_t port = host.port.value_or(target.scheme == "https" ? 443 : 80);
  return host.host == target.host && port == target.port;
}

bool host_header_matches_tunnel(std::string_view host_value, std::string_view host, std::uint16_t port) {
  const auto hp = parse_host_port(trim_ows(host_value), false);
  return hp && hp->host == host && hp->port.value_or(port) == port;
}

}  // namespace okta_sidecar::http
