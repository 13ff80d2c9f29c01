#pragma once
// The upstream's response as the relay reads it: an HTTP/1.x response parser (RFC 9112) that
// keeps the head flat, the status line and fields copied into one string with views into it,
// and hands the body (de-chunked) to a buffer the caller lends piece by piece (streamed) or to a
// string up to a limit (read whole). Pure: bytes in, state out; the relay does the I/O.
//
// It replaces Beast's parser, whose field container cost an allocation and a tree insert per
// field and whose head parse was the largest single cost of a proxied request. Its framing rules
// are Beast's (and RFC 9112 §6.3), with errors from beast::http::error:
//   - no body for 1xx, 204, 304 and the answer to HEAD (skip);
//   - Transfer-Encoding whose last coding is chunked: chunked; another last coding: the body
//     ends with the close; Transfer-Encoding together with Content-Length: bad_transfer_encoding
//     (a message framed two ways is how responses are smuggled);
//   - Content-Length: one decimal value, repeated identically at most (a list or several
//     fields), else bad_content_length or multiple_content_length;
//   - otherwise the body ends with the close (need_eof).
// The head, and a chunked body's trailer section, are limited by header_limit (header_limit);
// obs-fold is replaced by a space (RFC 9112 §5.2); a bare LF or a control byte is an error.
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "okta_sidecar/http/text.hpp"

namespace okta_sidecar::proxy {

class response_reader {
 public:
  using error_code = boost::system::error_code;

  response_reader();   // its head and field buffers come from the thread's spares...
  ~response_reader();  // ...and go back to them
  response_reader(const response_reader&) = delete;  // the fields point into the head
  response_reader& operator=(const response_reader&) = delete;

  // Limits (set before the first put).
  void header_limit(std::uint32_t bytes) { header_limit_ = bytes; }
  void skip(bool no_body) { skip_body_ = no_body; }  // the answer to a HEAD request

  // Parses from the start of `in`, which holds every byte not consumed before; returns how many
  // it consumed. ec: need_more (the head, a chunk line or the trailers are not all there yet; the
  // same bytes and more next time), need_buffer (the body buffer is full), or a framing error.
  // Stops after the head: the body starts with the next call.
  std::size_t put(boost::asio::const_buffer in, error_code& ec);
  // The connection closed: ends a body delimited by the close, else partial_message.
  void put_eof(error_code& ec);

  bool got_some() const { return got_some_; }
  bool is_header_done() const { return state_ != state::head; }
  bool is_done() const { return state_ == state::done; }
  bool chunked() const { return chunked_; }
  std::optional<std::uint64_t> content_length() const { return content_length_; }
  bool need_eof() const { return need_eof_; }
  // Whether the connection may carry another response after this one: HTTP/1.1 without
  // "Connection: close", or HTTP/1.0 with "keep-alive", and a body not delimited by the close.
  bool keep_alive() const;

  // The head, once is_header_done(): status, reason phrase and HTTP version (10 or 11) as
  // received, and the fields in order (trailer fields are not kept).
  unsigned status() const { return status_; }
  std::string_view reason() const { return reason_; }
  unsigned version() const { return version_; }
  std::span<const http::header_view> fields() const { return fields_; }
  // The first field of that name (any case).
  std::optional<std::string_view> find(std::string_view name) const;

  // Streamed body: the next piece goes to [data, data + size). body_room() is what is left of
  // it; put stops (need_buffer) when it is full.
  void body_into(char* data, std::size_t size) {
    out_ = data;
    room_ = size;
  }
  std::size_t body_room() const { return room_; }
  // Whole body: appended to `out`, body_limit past `limit` bytes.
  void body_to(std::string& out, std::size_t limit) {
    whole_ = &out;
    whole_limit_ = limit;
  }
  // A streamed body's buffer is full while body bytes are still to come.
  bool needs_buffer() const { return whole_ == nullptr && room_ == 0 && is_header_done() && !is_done(); }

 private:
  enum class state { head, length, to_eof, chunk_line, chunk_data, chunk_end, trailers, done };

  std::size_t put_head(std::string_view in, error_code& ec);
  // 0, or the beast::http::error the head fails with. `head` ends with its last field's CRLF.
  int parse_head(std::string_view head);
  int take_field(std::string_view name, std::string_view value);
  // Where head line i starts: after the CRLF of the line before (line_ends_.size(): the line
  // not yet ended).
  std::size_t line_start(std::size_t i) const { return i == 0 ? 0 : line_ends_[i - 1] + 2; }
  std::size_t take_body(std::string_view in, error_code& ec);

  state state_ = state::head;
  std::uint32_t header_limit_ = 8192;
  bool skip_body_ = false;
  bool got_some_ = false;
  std::size_t scanned_ = 0;  // head or trailer bytes searched for their end without finding it

  std::string text_;  // the head; reason_ and fields_ point into it
  std::vector<http::header_view> fields_;
  std::vector<std::uint32_t> line_ends_;  // where each ended head line's CRLF is
  std::string_view reason_;
  unsigned status_ = 0;
  unsigned version_ = 11;
  bool chunked_ = false;
  bool need_eof_ = false;
  bool close_ = false;       // Connection: close
  bool keep_alive_ = false;  // Connection: keep-alive
  bool transfer_encoding_ = false;
  std::optional<std::uint64_t> content_length_;
  std::uint64_t left_ = 0;  // of the Content-Length body, or of the current chunk

  char* out_ = nullptr;
  std::size_t room_ = 0;
  std::string* whole_ = nullptr;
  std::size_t whole_limit_ = 0;
};

}  // namespace okta_sidecar::proxy
