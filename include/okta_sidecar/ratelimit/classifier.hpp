#pragma once
// Maps method + request path to an Okta rate-limit bucket, from a JSON table
// (config/okta-buckets.json, embedded; a user's rate_limit.buckets_file may override it).
//
// Table format (version 1); unknown keys anywhere are an error:
//   {"version": 1, "note": "...", "groups": [
//     {"name": "oauth2-token",          // lower-case [a-z0-9._-]; metric label and merge key
//      "rate_limited": true,            // default true; false = never queued (keys, discovery)
//      "per_principal": false,          // default false; true = limit is per user/client
//      "typical_limit": 2000,           // optional, requests/minute; a seed, never trusted
//      "note": "...",
//      "match": [                       // one or more rows
//        {"methods": ["POST", "OPTIONS"],   // or "*"; listing GET also covers HEAD
//         "path": "/oauth2/{authServerId}/v1/token",
//         "bucket": "oauth2-token:{authServerId}"}]}]}   // default: the group name
// Paths: literal segments in normalised form, "{name}" = exactly one segment, a final "/*" =
// this path and anything below it (on segment boundaries: /api/v1/users/* never matches
// /api/v1/usersX). Among matching rows the most specific wins, position by position:
// literal > {param} > end of path > "*"; then a later merge layer, then a method list over "*".
// Two rows of one table with the same shape and overlapping methods are rejected.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace okta_sidecar::ratelimit {

// Result of classifying one request.
struct classification {
  std::string group;           // table entry name, e.g. "oauth2-token"
  std::string bucket;          // bucket instance, e.g. "oauth2-token:default" (authServerId is a parameter)
  bool rate_limited = true;    // false for keys/discovery (/.well-known, /v1/keys)
  bool per_principal = false;  // per-user/client limits (authn, authorize, users/me): their 429s pass through
  // The bucket name carries a path parameter ({authServerId}): client-chosen, so the scheduler
  // caps how many such instances a host may have (issue 14).
  bool instance = false;
  // The buckets file's per-bucket capacity_percent (1-100); unset = rate_limit.capacity_percent.
  std::optional<std::uint32_t> capacity_percent;

  bool operator==(const classification&) const = default;
};

// Table-driven classifier. Okta picks the most specific bucket: exact paths before patterns,
// literal segments before {parameters}, longer prefixes before shorter ones, catch-alls last.
class classifier {
 public:
  classifier();  // no table: every path is "default"
  // Throws std::runtime_error naming `source`, the group / match entry and the field at fault.
  static classifier from_json(std::string_view json_text, std::string_view source);
  static classifier builtin();  // the embedded config/okta-buckets.json

  // Groups of `overrides` whose name is already present replace that group; new ones are added.
  // On equal specificity an override's match wins over the table it is merged into.
  void merge(const classifier& overrides);

  // `target` may carry ?query / #fragment or be absolute-form; it is normalised first.
  // Never throws; a path no entry matches gets group and bucket "default".
  classification classify(std::string_view method, std::string_view target) const;
  // The same for a path normal_path() has already made of the target: not scanned again.
  classification classify_normal(std::string_view method, std::string_view path) const;

  std::vector<std::string> groups() const;  // table order
  // Every bucket name the table can produce without a path parameter (literal templates and
  // group names): the fixed part of the metric label set (issue 14).
  std::vector<std::string> literal_buckets() const;
  // The table's "typical_limit" for a group (requests per minute): a seed for tests and
  // dashboards only; the real limit is always learned from response headers.
  std::optional<std::int64_t> typical_limit(std::string_view group) const;

 private:
  struct segment {
    enum class kind : std::uint8_t { literal, param };
    kind k = kind::literal;
    std::string text;        // literal text, or the parameter name
    std::uint64_t hash = 0;  // of a literal's text: classify() compares these before strings
  };
  struct bucket_piece {  // bucket template "oauth2-token:{authServerId}" split into pieces
    std::string literal;
    int param_segment = -1;  // index of the path segment substituted, or -1 for literal
  };
  struct rule {
    std::string path;  // as written, for messages
    std::vector<segment> segments;
    bool prefix = false;        // pattern ended in "/*": this path and everything below it
    std::uint32_t methods = 0;  // bit set; see method_bit() in the .cpp
    bool any_method = false;    // "*"
    std::vector<bucket_piece> bucket;
  };
  struct group {
    std::string name;
    bool rate_limited = true;
    bool per_principal = false;
    std::optional<std::int64_t> typical_limit;
    std::optional<std::uint32_t> capacity_percent;
    std::vector<rule> rules;
    int layer = 0;  // 0 for the base table, +1 per merge: later layers win ties
  };
  struct ranked {  // one row, flattened so that rejecting it touches one cache line or two
    std::uint32_t group_index = 0;
    std::uint32_t rule_index = 0;
    std::uint32_t methods = 0;     // all bits for "*"
    std::uint32_t param_mask = 0;  // bit i set: segment i is a {param}
    std::uint32_t hash_begin = 0;  // first of this row's segment hashes in hashes_
    std::uint16_t segment_count = 0;
    bool prefix = false;
  };

  std::vector<group> groups_;
  std::vector<ranked> order_;          // most specific first: the first match is the answer
  std::vector<std::uint64_t> hashes_;  // literal segment hashes of every row, in order_ order
  // The rows (indices into order_, in order) a path can match, by its number of segments n (the
  // last entry for paths longer than any row) and then by its third segment, which tells most
  // of Okta's /api/v1/{resource} rows apart: `by_third` holds, for each literal third segment of
  // a row, that row and every row whose third segment is not literal; `others`, the latter.
  struct candidates {
    std::vector<std::uint32_t> others;
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> by_third;  // segment hash
  };
  std::vector<candidates> by_count_;

  void rebuild_order();
  static bool more_specific(const classifier::group& ga, const rule& a, const classifier::group& gb,
                            const rule& b);
  friend struct classifier_access;
};

}  // namespace okta_sidecar::ratelimit
