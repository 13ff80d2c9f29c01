#pragma once
// The upstream's response as the relay uses it: Beast's parser (framing, limits, chunked
// decoding) with the head kept flat. The status line and fields are copied into one string with
// views into it, where beast::http::parser would allocate an element per field and insert it in
// a tree, only to have the relay copy them out again. The body goes into a buffer the caller
// hands in piece by piece (streamed) or into a string up to a limit (read whole).
#include <boost/beast/http/basic_parser.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::proxy {

class response_reader final : public boost::beast::http::basic_parser<false> {
 public:
  using error_code = boost::system::error_code;
  using beast_view = boost::beast::string_view;

  response_reader();

  // The head, once is_header_done(): status, reason phrase and HTTP version (10 or 11) as
  // received, and the fields in order (trailer fields are not kept).
  unsigned status() const { return status_; }
  std::string_view reason() const { return reason_; }
  unsigned version() const { return version_; }
  std::span<const http::header_view> fields() const { return fields_; }
  // The first field of that name (any case).
  std::optional<std::string_view> find(std::string_view name) const;

  // Streamed body: the next piece goes to [data, data + size). body_room() is what is left of
  // it; the parser stops (error::need_buffer) when it is full.
  void body_into(char* data, std::size_t size) {
    out_ = data;
    room_ = size;
  }
  std::size_t body_room() const { return room_; }

  // Whole body: appended to `out`, error::body_limit past `limit` bytes.
  void body_to(std::string& out, std::size_t limit) {
    whole_ = &out;
    whole_limit_ = limit;
  }

 private:
  void on_request_impl(boost::beast::http::verb, beast_view, beast_view, int, error_code&) override;
  void on_response_impl(int code, beast_view reason, int version, error_code& ec) override;
  void on_field_impl(boost::beast::http::field, beast_view name, beast_view value, error_code& ec) override;
  void on_header_impl(error_code&) override { header_done_ = true; }
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override;
  std::size_t on_body_impl(beast_view body, error_code& ec) override { return take(body, ec); }
  void on_chunk_header_impl(std::uint64_t, beast_view, error_code&) override {}
  // (A chunk's bytes are body bytes like any other: the relay re-frames them.)
  std::size_t on_chunk_body_impl(std::uint64_t, beast_view body, error_code& ec) override {
    return take(body, ec);
  }
  void on_finish_impl(error_code&) override {}

  std::string_view keep(std::string_view s);
  std::size_t take(std::string_view body, error_code& ec);

  std::string text_;  // status reason and field names and values; the views point here
  std::vector<http::header_view> fields_;
  std::string_view reason_;
  unsigned status_ = 0;
  unsigned version_ = 11;
  bool header_done_ = false;
  char* out_ = nullptr;
  std::size_t room_ = 0;
  std::string* whole_ = nullptr;
  std::size_t whole_limit_ = 0;
};

}  // namespace okta_sidecar::proxy
