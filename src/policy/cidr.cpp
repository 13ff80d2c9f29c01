#include "okta_sidecar/policy/cidr.hpp"

#include <stdexcept>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::policy {

namespace {

bool prefix_equal(const http::ip_literal& a, const http::ip_literal& b, unsigned prefix) {
  const unsigned full = prefix / 8, bits = prefix % 8;
  for (unsigned i = 0; i < full; ++i)
    if (a.bytes[i] != b.bytes[i]) return false;
  if (bits == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
  return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Plain decimal, no sign and no leading zero ("/08" is refused like the octet "010").
std::optional<unsigned> parse_prefix(std::string_view text, unsigned max) {
  if (text.empty() || text.size() > 3 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  unsigned v = 0;
  for (char c : text) {
    if (!http::is_digit(c)) return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v > max) return std::nullopt;
  return v;
}

}  // namespace

bool cidr::contains(const http::ip_literal& address) const {
  const http::ip_literal ip = http::unmap_v4(address);
  if (network.v6 == ip.v6 && prefix_equal(network, ip, prefix)) return true;
  // A v4-mapped range (::ffff:10.0.0.0/104) also matches the plain IPv4 form.
  if (network.v6 && !ip.v6 && prefix >= 96) {
    const http::ip_literal as_v4 = http::unmap_v4(network);
    if (!as_v4.v6 && prefix_equal(as_v4, ip, prefix - 96)) return true;
  }
  return false;
}

std::optional<cidr> parse_cidr(std::string_view text, std::string* why) {
  auto fail = [why](std::string message) -> std::optional<cidr> {
    if (why != nullptr) *why = std::move(message);
    return std::nullopt;
  };
  const auto slash = text.find('/');
  const std::string_view addr = text.substr(0, slash);
  // http::parse_ip drops a zone (it reads peers as Asio prints them); a range has none.
  if (addr.find('%') != std::string_view::npos)
    return fail(quote(addr) + " has a zone id, which a range cannot have");
  const auto ip = http::parse_ip(addr);
  if (!ip) return fail(quote(addr) + " is not an IPv4 or IPv6 address");
  const unsigned max_prefix = ip->v6 ? 128 : 32;
  cidr c{*ip, max_prefix};
  if (slash != std::string_view::npos) {
    const std::string_view len_text = text.substr(slash + 1);
    const auto len = parse_prefix(len_text, max_prefix);
    if (!len) {
      return fail("has prefix length /" + std::string(len_text) + "; expected a number from 0 to " +
                  std::to_string(max_prefix) + (ip->v6 ? " for IPv6" : " for IPv4"));
    }
    c.prefix = *len;
  }
  http::ip_literal masked = c.network;
  for (unsigned bit = c.prefix; bit < max_prefix; ++bit)
    masked.bytes[bit / 8] = static_cast<std::uint8_t>(masked.bytes[bit / 8] & ~(0x80u >> (bit % 8)));
  if (masked != c.network) {
    const std::string prefix = std::to_string(c.prefix);
    return fail("has address bits set after the /" + prefix + " prefix (did you mean \"" +
                masked.to_string() + "/" + prefix + "\"?)");
  }
  return c;
}

cidr_list cidr_list::parse(const std::vector<std::string>& entries) {
  cidr_list out;
  for (const auto& entry : entries) {
    std::string why;
    const auto c = parse_cidr(entry, &why);
    if (!c) throw std::runtime_error("access.allowed_clients: \"" + entry + "\" is not a CIDR: " + why);
    out.ranges_.push_back(*c);
  }
  return out;
}

bool cidr_list::contains(std::string_view ip_text) const {
  const auto ip = http::parse_ip(ip_text);
  if (!ip) return false;
  for (const auto& r : ranges_)
    if (r.contains(*ip)) return true;
  return false;
}

}  // namespace okta_sidecar::policy
