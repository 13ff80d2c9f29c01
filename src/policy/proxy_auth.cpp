#include "okta_sidecar/policy/proxy_auth.hpp"

#include <stdexcept>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::policy {

namespace {

constexpr std::size_t max_value_length = 4096;

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string_view trim_space(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

bool constant_time_equal(std::string_view candidate, std::string_view expected) {
  volatile unsigned char diff = candidate.size() == expected.size() ? 0 : 1;
  const std::size_t n = candidate.size();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const unsigned char c = n == 0 ? 0 : static_cast<unsigned char>(candidate[i % n]);
    diff = diff | static_cast<unsigned char>(c ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

std::optional<std::string> decode_base64(std::string_view text) {
  std::size_t pad = 0;
  while (!text.empty() && text.back() == '=' && pad < 2) {
    text.remove_suffix(1);
    ++pad;
  }
  if (pad > 0 && (text.size() + pad) % 4 != 0) return std::nullopt;
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = base64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // Leftover bits must be zero, or two different texts would decode to the same credential.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

proxy_auth proxy_auth::from_lines(std::string_view text) {
  proxy_auth out;
  std::size_t line_no = 0;
  while (!text.empty() || line_no == 0) {
    ++line_no;
    const auto nl = text.find('\n');
    const std::string_view raw = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const std::string_view line = trim_space(raw);
    auto bad = [&](const std::string& why) {
      return std::runtime_error("proxy credentials line " + std::to_string(line_no) + ": " + why);
    };
    if (line.empty() || line.front() == '#') {
      if (text.empty()) break;
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) throw bad("expected \"user:password\"");
    const std::string_view user = line.substr(0, colon);
    const std::string_view password = line.substr(colon + 1);
    if (user.empty()) throw bad("empty user name");
    if (password.empty()) throw bad("empty password");
    for (char c : line) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) throw bad("control character");
    }
    for (const auto& existing : out.credentials_)
      if (existing.user == user) throw bad("duplicate user \"" + std::string(user) + "\"");
    out.credentials_.push_back({std::string(user), std::string(line)});
    if (text.empty()) break;
  }
  if (out.credentials_.empty()) throw std::runtime_error("proxy credentials: no \"user:password\" line");
  return out;
}

std::optional<std::string> proxy_auth::authenticate(std::string_view value) const {
  if (credentials_.empty() || value.size() > max_value_length) return std::nullopt;
  value = http::trim_ows(value);
  // credentials = auth-scheme 1*SP token68 (RFC 9110 §11.4); the scheme is case-insensitive.
  if (value.size() < 6 || !http::iequals(value.substr(0, 5), "basic") || value[5] != ' ') return std::nullopt;
  value.remove_prefix(6);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  const auto decoded = decode_base64(value);
  if (!decoded) return std::nullopt;
  const credential* match = nullptr;
  for (const auto& c : credentials_) {
    // No early exit: every entry is compared so timing does not reveal which user exists.
    if (constant_time_equal(*decoded, c.user_pass) && match == nullptr) match = &c;
  }
  if (match == nullptr) return std::nullopt;
  return match->user;
}

}  // namespace okta_sidecar::policy
