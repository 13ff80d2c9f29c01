#include "okta_sidecar/proxy/response_reader.hpp"

#include <algorithm>
#include <boost/beast/http/error.hpp>
#include <cstring>

namespace okta_sidecar::proxy {

namespace bhttp = boost::beast::http;

response_reader::response_reader() { text_.reserve(1024); }

std::optional<std::string_view> response_reader::find(std::string_view name) const {
  for (const auto& [n, v] : fields_) {
    if (http::iequals(n, name)) return v;
  }
  return std::nullopt;
}

void response_reader::on_request_impl(bhttp::verb, beast_view, beast_view, int, error_code&) {}

void response_reader::on_response_impl(int code, beast_view reason, int version, error_code&) {
  status_ = static_cast<unsigned>(code);
  version_ = static_cast<unsigned>(version);
  reason_ = keep(std::string_view(reason));
}

// Appends `s` to the text; when the text has to move, the views already taken move with it.
std::string_view response_reader::keep(std::string_view s) {
  const char* before = text_.data();
  const std::size_t at = text_.size();
  text_.append(s);
  if (text_.data() != before) {
    const auto moved = [&](std::string_view v) {
      return v.empty() ? v : std::string_view(text_.data() + (v.data() - before), v.size());
    };
    reason_ = moved(reason_);
    for (auto& [n, v] : fields_) {
      n = moved(n);
      v = moved(v);
    }
  }
  return {text_.data() + at, s.size()};
}

void response_reader::on_field_impl(bhttp::field, beast_view name, beast_view value, error_code&) {
  if (header_done_) return;  // a trailer field: the head went out already, and it ends here
  const auto n = keep(std::string_view(name));
  const auto v = keep(std::string_view(value));
  fields_.emplace_back(n, v);
}

void response_reader::on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) {
  if (whole_ != nullptr && length && *length > whole_limit_) ec = bhttp::error::body_limit;
}

std::size_t response_reader::take(std::string_view body, error_code& ec) {
  if (whole_ != nullptr) {
    if (body.size() > whole_limit_ - whole_->size()) {
      ec = bhttp::error::body_limit;
      return 0;
    }
    whole_->append(body);
    return body.size();
  }
  if (out_ == nullptr) {
    ec = bhttp::error::need_buffer;
    return 0;
  }
  const std::size_t n = std::min(room_, body.size());
  if (n > 0) std::memcpy(out_, body.data(), n);
  out_ += n;
  room_ -= n;
  if (n < body.size()) ec = bhttp::error::need_buffer;
  return n;
}

}  // namespace okta_sidecar::proxy
