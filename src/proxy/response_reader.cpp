#include "okta_sidecar/proxy/response_reader.hpp"

#include <algorithm>
#include <boost/beast/http/error.hpp>
#include <charconv>
#include <cstring>

#include "okta_sidecar/net/block_cache.hpp"

namespace okta_sidecar::proxy {

namespace {

namespace bhttp = boost::beast::http;
using error_code = boost::system::error_code;

constexpr std::size_t max_chunk_line = 4096;  // a chunk size with its extensions

// The head's checks report a beast::http::error as an int, 0 for none: cheaper to pass back
// field by field than an error_code.
constexpr int fail(bhttp::error e) { return static_cast<int>(e); }

// The next line of `block` (without its CRLF); false at the end. A bare CR or LF stays inside
// the line, where the name and value checks refuse it.
bool next_line(std::string_view& block, std::string_view& line) {
  if (block.empty()) return false;
  for (std::size_t from = 0;;) {  // the first LF after a CR: memchr is the whole search
    const auto* lf = static_cast<const char*>(std::memchr(block.data() + from, '\n', block.size() - from));
    if (lf == nullptr) {
      line = block;
      block = {};
      return true;
    }
    const auto at = static_cast<std::size_t>(lf - block.data());
    if (at > 0 && block[at - 1] == '\r') {
      line = block.substr(0, at - 1);
      block.remove_prefix(at + 1);
      return true;
    }
    from = at + 1;
  }
}

}  // namespace

response_reader::response_reader()
    : text_(net::spares<std::string>::take()),
      fields_(net::spares<std::vector<http::header_view>>::take()),
      line_ends_(net::spares<std::vector<std::uint32_t>>::take()) {
  fields_.reserve(24);  // one allocation for a usual head (Okta's carry about 20 fields)
  line_ends_.reserve(25);
}

response_reader::~response_reader() {
  net::spares<std::string>::give(std::move(text_));
  net::spares<std::vector<http::header_view>>::give(std::move(fields_));
  net::spares<std::vector<std::uint32_t>>::give(std::move(line_ends_));
}

std::optional<std::string_view> response_reader::find(std::string_view name) const {
  for (const auto& [n, v] : fields_) {
    if (http::iequals(n, name)) return v;
  }
  return std::nullopt;
}

bool response_reader::keep_alive() const {
  if (need_eof_) return false;
  return version_ >= 11 ? !close_ : keep_alive_;
}

std::size_t response_reader::put(boost::asio::const_buffer in, error_code& ec) {
  ec = {};
  const std::string_view data(static_cast<const char*>(in.data()), in.size());
  if (data.empty()) return 0;
  got_some_ = true;
  if (state_ == state::head) return put_head(data, ec);
  std::size_t used = 0;
  while (used < data.size() && state_ != state::done && !ec) {
    const std::string_view rest = data.substr(used);
    switch (state_) {
      case state::length:
      case state::chunk_data: {
        const std::size_t n = take_body(
            rest.substr(0, static_cast<std::size_t>(std::min<std::uint64_t>(left_, rest.size()))), ec);
        used += n;
        left_ -= n;
        if (left_ == 0) state_ = state_ == state::length ? state::done : state::chunk_end;
        break;
      }
      case state::to_eof:
        used += take_body(rest, ec);
        break;
      case state::chunk_line: {
        const auto eol = rest.find("\r\n");
        if (eol == std::string_view::npos) {
          ec = rest.size() > max_chunk_line ? bhttp::error::bad_chunk : bhttp::error::need_more;
          break;
        }
        const std::string_view line = rest.substr(0, eol);
        std::uint64_t size = 0;
        const auto digits = line.find_first_not_of("0123456789abcdefABCDEF");
        const std::string_view hex = line.substr(0, digits);
        if (hex.empty() || hex.size() > 16 ||
            std::from_chars(hex.data(), hex.data() + hex.size(), size, 16).ec != std::errc{}) {
          ec = bhttp::error::bad_chunk;
          break;
        }
        // chunk-ext (RFC 9112 §7.1.1) is ignored, but must be an extension and one line.
        const std::string_view ext = http::trim_ows(line.substr(hex.size()));
        if (!ext.empty() && (ext.front() != ';' || !http::is_field_value(ext))) {
          ec = bhttp::error::bad_chunk_extension;
          break;
        }
        used += eol + 2;
        left_ = size;
        scanned_ = 0;
        state_ = size == 0 ? state::trailers : state::chunk_data;
        break;
      }
      case state::chunk_end:
        if (rest[0] != '\r' || (rest.size() > 1 && rest[1] != '\n')) {
          ec = bhttp::error::bad_chunk;
        } else if (rest.size() < 2) {
          ec = bhttp::error::need_more;
        } else {
          used += 2;
          state_ = state::chunk_line;
        }
        break;
      case state::trailers: {
        if (rest.starts_with("\r\n")) {
          used += 2;
          state_ = state::done;
          break;
        }
        // Trailer fields (RFC 9112 §7.1.2): checked, bounded like a head, not kept (the head
        // went out already).
        const auto end = rest.find("\r\n\r\n", scanned_ > 3 ? scanned_ - 3 : 0);
        if (end == std::string_view::npos || end + 4 > header_limit_) {
          scanned_ = rest.size();
          ec = rest.size() >= header_limit_ ? bhttp::error::header_limit : bhttp::error::need_more;
          break;
        }
        std::string_view block = rest.substr(0, end + 2), line;
        bool bad = false;
        while (!bad && next_line(block, line)) {
          if (line.starts_with(' ') || line.starts_with('\t')) {
            bad = !http::is_field_value(line);  // obs-fold: a continuation
            continue;
          }
          const auto colon = line.find(':');
          bad = colon == std::string_view::npos || !http::is_token(line.substr(0, colon)) ||
                !http::is_field_value(line.substr(colon + 1));
        }
        if (bad) {
          ec = bhttp::error::bad_field;
          break;
        }
        used += end + 4;
        state_ = state::done;
        break;
      }
      case state::head:
      case state::done:
        break;
    }
  }
  return used;
}

std::size_t response_reader::put_head(std::string_view in, error_code& ec) {
  // What is there of the status line must look like one: bytes that are not a response (stray
  // ones, another protocol) fail now, not after a header timeout.
  constexpr std::string_view http_slash = "HTTP/";
  if (in.substr(0, http_slash.size()) != http_slash.substr(0, std::min(in.size(), http_slash.size()))) {
    ec = bhttp::error::bad_version;
    return 0;
  }
  // The head's lines, split once: each LF right after a CR ends one (a bare CR or LF stays in
  // its line, where the checks refuse it), and an empty line ends the head. The search goes on
  // from where the last call stopped (scanned_), with the line ends found so far.
  for (;;) {
    const auto* lf = static_cast<const char*>(std::memchr(in.data() + scanned_, '\n', in.size() - scanned_));
    if (lf == nullptr) {
      scanned_ = in.size();
      ec = in.size() >= header_limit_ ? bhttp::error::header_limit : bhttp::error::need_more;
      return 0;
    }
    const auto at = static_cast<std::size_t>(lf - in.data());
    scanned_ = at + 1;
    const std::size_t open = line_start(line_ends_.size());  // the line not yet ended
    if (at == open || in[at - 1] != '\r') continue;
    if (at + 1 > header_limit_) {  // a line, and so the head, ends past the limit
      ec = bhttp::error::header_limit;
      return 0;
    }
    if (at - 1 == open) break;  // the empty line: the head is [0, open)
    line_ends_.push_back(static_cast<std::uint32_t>(at - 1));
  }
  const std::size_t head_end = line_start(line_ends_.size());
  if (const int e = parse_head(in.substr(0, head_end))) {
    ec = static_cast<bhttp::error>(e);
    return 0;
  }
  if (skip_body_ || status_ / 100 == 1 || status_ == 204 || status_ == 304) {
    state_ = state::done;
  } else if (chunked_) {
    state_ = state::chunk_line;
  } else if (!transfer_encoding_ && content_length_) {
    left_ = *content_length_;
    state_ = left_ > 0 ? state::length : state::done;
  } else {
    need_eof_ = true;  // no framing, or codings without chunked last: the close ends the body
    state_ = state::to_eof;
  }
  return head_end + 2;
}

// `in` is the head with each line's CRLF, its line ends found by put_head.
int response_reader::parse_head(std::string_view in) {
  text_.assign(in);  // one copy of the head: every view below points into it, and it stays put
  const auto line_at = [this](std::size_t i) {  // line i, without its CRLF
    return std::string_view(text_).substr(line_start(i), line_ends_[i] - line_start(i));
  };
  std::string_view line = line_at(0);
  // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4); the SP before
  // an empty reason is tolerated missing.
  if (line.size() < 12 || !line.starts_with("HTTP/1.") || !http::is_digit(line[7]) || line[8] != ' ')
    return fail(bhttp::error::bad_version);
  // A later 1.x is read as 1.1, the highest minor version we implement (RFC 9110 §2.5).
  version_ = line[7] == '0' ? 10 : 11;
  if (!http::is_digit(line[9]) || !http::is_digit(line[10]) || !http::is_digit(line[11]) || line[9] == '0')
    return fail(bhttp::error::bad_status);
  status_ = static_cast<unsigned>((line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0'));
  if (line.size() > 12) {
    if (line[12] != ' ') return fail(bhttp::error::bad_status);
    reason_ = line.substr(13);
    if (!http::is_field_value(reason_)) return fail(bhttp::error::bad_reason);
  }
  for (std::size_t i = 1; i < line_ends_.size(); ++i) {
    line = line_at(i);
    if (line.starts_with(' ') || line.starts_with('\t')) {
      // obs-fold (RFC 9112 §5.2): a proxy replaces it with a space. Not in a field that frames
      // the message: its value would be read two ways.
      const std::string_view more = http::trim_ows(line);
      if (fields_.empty()) return fail(bhttp::error::bad_obs_fold);
      const std::string_view name = fields_.back().first;
      if (http::iequals(name, "content-length") || http::iequals(name, "transfer-encoding"))
        return fail(bhttp::error::bad_obs_fold);
      if (!http::is_field_value(more)) return fail(bhttp::error::bad_value);
      if (more.empty()) continue;
      // The value grows in place, over what lies between it and `more` (its trailing OWS, the
      // CRLF and the fold's whitespace: at least three bytes, room for the joining space).
      auto& value = fields_.back().second;
      char* const start = text_.data() + (value.data() - text_.data());
      std::size_t size = value.size();
      if (size > 0) start[size++] = ' ';
      std::memmove(start + size, more.data(), more.size());
      value = std::string_view(start, size + more.size());
      if (const int e = take_field(fields_.back().first, value)) return e;
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || !http::is_token(line.substr(0, colon)))
      return fail(bhttp::error::bad_field);
    const std::string_view value = http::trim_ows(line.substr(colon + 1));
    if (!http::is_field_value(value)) return fail(bhttp::error::bad_value);
    const std::string_view name = line.substr(0, colon);
    fields_.emplace_back(name, value);
    if (const int e = take_field(name, value)) return e;
  }
  return 0;
}

// The fields that frame the message or the connection.
int response_reader::take_field(std::string_view name, std::string_view value) {
  if (http::iequals(name, "content-length")) {
    if (transfer_encoding_) return fail(bhttp::error::bad_transfer_encoding);
    bool bad = false;
    bool differ = false;
    std::size_t count = 0;
    http::for_each_element(value, [&](std::string_view e) {
      std::uint64_t v = 0;
      const auto [end, err] = std::from_chars(e.data(), e.data() + e.size(), v);
      ++count;
      if (err != std::errc{} || end != e.data() + e.size() || !http::is_digit(e.front())) {
        bad = true;
      } else if (content_length_ && *content_length_ != v) {
        differ = true;
      } else {
        content_length_ = v;
      }
    });
    if (bad || count == 0 ||
        static_cast<std::size_t>(std::count(value.begin(), value.end(), ',')) + 1 != count)
      return fail(bhttp::error::bad_content_length);
    if (differ) return fail(bhttp::error::multiple_content_length);
  } else if (http::iequals(name, "transfer-encoding")) {
    if (content_length_) return fail(bhttp::error::bad_transfer_encoding);
    // A coding after chunked: chunked was not the last one (RFC 9112 §6.1).
    if (chunked_) return fail(bhttp::error::bad_transfer_encoding);
    std::string_view last;
    bool bad = false;
    http::for_each_element(value, [&](std::string_view e) {
      bad = bad || !http::is_token(e.substr(0, e.find(';')));
      last = e;
    });
    if (bad || last.empty()) return fail(bhttp::error::bad_transfer_encoding);
    transfer_encoding_ = true;
    chunked_ = http::iequals(last, "chunked");
  } else if (http::iequals(name, "connection") || http::iequals(name, "proxy-connection")) {
    http::for_each_element(value, [&](std::string_view e) {
      if (http::iequals(e, "close")) close_ = true;
      if (http::iequals(e, "keep-alive")) keep_alive_ = true;
    });
  }
  return 0;
}

std::size_t response_reader::take_body(std::string_view in, error_code& ec) {
  if (whole_ != nullptr) {
    if ((content_length_ && *content_length_ > whole_limit_) || in.size() > whole_limit_ - whole_->size()) {
      ec = bhttp::error::body_limit;
      return 0;
    }
    whole_->append(in);
    return in.size();
  }
  if (room_ == 0) {
    ec = bhttp::error::need_buffer;
    return 0;
  }
  const std::size_t n = std::min(room_, in.size());
  std::memcpy(out_, in.data(), n);
  out_ += n;
  room_ -= n;
  return n;
}

void response_reader::put_eof(error_code& ec) {
  ec = {};
  if (state_ == state::to_eof) {
    state_ = state::done;
  } else if (state_ != state::done) {
    ec = bhttp::error::partial_message;
  }
}

}  // namespace okta_sidecar::proxy
