#include "okta_sidecar/ratelimit/path.hpp"

#include <vector>

namespace okta_sidecar::ratelimit {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// RFC 3986 §2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~".
bool is_unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// Path part of an origin-form or absolute-form request-target (RFC 9112 §3.2).
std::string_view path_part(std::string_view target) {
  // Two memchr calls: libstdc++'s find_first_of calls memchr per character, a hand loop costs
  // about eight instructions a character.
  target = target.substr(0, target.find('?'));
  target = target.substr(0, target.find('#'));
  if (target.starts_with('/')) return target;  // origin-form: all of it is the path
  const auto scheme_end = target.find("://");
  if (scheme_end != std::string_view::npos && target.find('/') > scheme_end) {
    const auto path_start = target.find('/', scheme_end + 3);
    target = path_start == std::string_view::npos ? std::string_view{} : target.substr(path_start);
  }
  return target;
}

// RFC 3986 §6.2.2.1/§6.2.2.2: decode triplets of unreserved characters, upper-case the hex of
// the rest. "%2F" therefore stays encoded and never becomes a segment separator, which is how
// Okta tells a login containing "/" apart from a sub-resource.
void append_decoded(std::string& out, std::string_view segment) {
  for (std::size_t i = 0; i < segment.size(); ++i) {
    const char c = segment[i];
    if (c == '%' && i + 2 < segment.size()) {
      const int hi = hex_value(segment[i + 1]);
      const int lo = hex_value(segment[i + 2]);
      if (hi >= 0 && lo >= 0) {
        const char decoded = static_cast<char>(hi * 16 + lo);
        if (is_unreserved(decoded)) {
          out.push_back(decoded);
        } else {
          constexpr char digits[] = "0123456789ABCDEF";
          out.push_back('%');
          out.push_back(digits[hi]);
          out.push_back(digits[lo]);
        }
        i += 2;
        continue;
      }
    }
    if (c == '%') {
      // A '%' that starts no valid escape is written as "%25": kept bare, it could join a
      // decoded neighbour into a new escape ("%3%31" -> "%31"), and normalising twice would
      // then differ from normalising once (found by fuzz_classifier).
      out += "%25";
      continue;
    }
    out.push_back(c);
  }
}

// normalize_path's work on a path part that is not normal already.
std::string normalized(std::string_view path) {
  std::string out;
  out.reserve(path.size() + 1);
  // Each entry is where a segment (including its leading "/") starts in `out`, so ".." can
  // drop the last one: the remove_dot_segments loop of RFC 3986 §5.2.4 on whole segments.
  std::vector<std::size_t> starts;
  std::string decoded;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    auto slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    const std::string_view raw = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (raw.empty()) continue;  // leading "/", "//" and a trailing "/"
    decoded.clear();
    append_decoded(decoded, raw);
    if (decoded == ".") continue;
    if (decoded == "..") {
      if (!starts.empty()) {
        out.resize(starts.back());
        starts.pop_back();
      }
      continue;
    }
    starts.push_back(out.size());
    out.push_back('/');
    out += decoded;
  }
  if (out.empty()) out = "/";
  return out;
}

}  // namespace

bool already_normal(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  if (path.size() == 1) return true;
  if (path.back() == '/' || path.find('%') != std::string_view::npos) return false;
  std::size_t pos = 1;
  while (pos <= path.size()) {  // segment by segment, memchr finding each '/'
    auto slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    const auto seg = path.substr(pos, slash - pos);
    if (seg.empty() || seg == "." || seg == "..") return false;
    pos = slash + 1;
  }
  return true;
}

std::string_view normal_path(std::string_view target, std::string& storage) {
  const std::string_view path = path_part(target);
  if (already_normal(path)) return path;
  storage = normalized(path);
  return storage;
}

std::string normalize_path(std::string_view target) {
  const std::string_view path = path_part(target);
  return already_normal(path) ? std::string(path) : normalized(path);
}

bool path_glob_match(std::string_view pattern, std::string_view path) {
  std::size_t p = 0, s = 0;
  while (p < pattern.size()) {
    if (pattern[p] == '*') {
      if (p + 1 == pattern.size()) return true;
      while (s < path.size() && path[s] != '/') ++s;
      ++p;
      continue;
    }
    if (s >= path.size() || pattern[p] != path[s]) return false;
    ++p;
    ++s;
  }
  return s == path.size();
}

}  // namespace okta_sidecar::ratelimit
