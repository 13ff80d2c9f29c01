#include "okta_sidecar/http/hop_by_hop.hpp"

#include <algorithm>
#include <array>
#include <string_view>

namespace okta_sidecar::http {

namespace {

constexpr std::array<std::string_view, 9> fixed_names = {
    "connection", "proxy-connection",    "keep-alive",        "te", "trailer", "transfer-encoding",
    "upgrade",    "proxy-authorization", "proxy-authenticate"};

}  // namespace

std::vector<std::string> hop_by_hop_names(std::span<const header_view> headers) {
  std::vector<std::string> out(fixed_names.begin(), fixed_names.end());
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "connection")) continue;
    for (auto option : split_list(value)) {
      if (!is_token(option)) continue;
      std::string lower = to_lower(option);
      if (lower == "host" || lower == "content-length") continue;
      if (std::find(out.begin(), out.end(), lower) == out.end()) out.push_back(std::move(lower));
    }
  }
  return out;
}

bool is_fixed_hop_by_hop(std::string_view name) {
  // By length first (fixed_names, every response field goes through here): most names have
  // none of these lengths, and no length has more than two.
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "trailer") || iequals(name, "upgrade");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    case 18:
      return iequals(name, "proxy-authenticate");
    case 19:
      return iequals(name, "proxy-authorization");
    default:
      return false;
  }
}

void connection_options::add(std::string_view value) {
  for_each_element(value, [this](std::string_view option) {
    if (overflow_ || !is_token(option) || is_fixed_hop_by_hop(option) || iequals(option, "host") ||
        iequals(option, "content-length") || lists(option)) {
      return;
    }
    if (count_ == names_.size()) {
      overflow_ = true;
      return;
    }
    names_[count_++] = option;
  });
}

bool connection_options::lists(std::string_view name) const {
  for (std::size_t i = 0; i < count_; ++i) {
    if (iequals(names_[i], name)) return true;
  }
  return false;
}

hop_by_hop_set::hop_by_hop_set(std::span<const header_view> headers) {
  for (const auto& [name, value] : headers) {
    if (iequals(name, "connection")) listed_.add(value);
  }
  if (listed_.overflow()) many_ = hop_by_hop_names(headers);
}

bool hop_by_hop_set::contains(std::string_view name) const {
  if (!listed_.overflow()) return is_fixed_hop_by_hop(name) || listed_.lists(name);
  return std::any_of(many_.begin(), many_.end(), [&](const std::string& m) { return iequals(m, name); });
}

bool wants_close(unsigned version, std::span<const header_view> headers) {
  bool close = false;
  bool keep_alive = false;
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "connection") && !iequals(name, "proxy-connection")) continue;
    for (auto option : split_list(value)) {
      if (iequals(option, "close")) close = true;
      if (iequals(option, "keep-alive")) keep_alive = true;
    }
  }
  if (close) return true;
  return version < 11 && !keep_alive;
}

}  // namespace okta_sidecar::http
