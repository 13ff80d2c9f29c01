-- wrk script for bench/run: every load is bounded in requests as well as seconds, forward
-- proxies get absolute-form targets (RFC 9112 section 3.2.2), and the result is one JSON line.
--   WRK_MAX_REQUESTS  requests per wrk thread before it stops (0 = only the -d cap)
--   WRK_TARGET        absolute-form URL to send instead of the path (forward proxies)
--   WRK_AUTHZ         Authorization value for every request (none when unset)
local max_requests = tonumber(os.getenv("WRK_MAX_REQUESTS") or "0") or 0
local target = os.getenv("WRK_TARGET")
local count = 0

-- A client sends Host equal to the target's authority (RFC 9112 section 3.2.2); wrk's default
-- would name the proxy instead.
local authority = target and target:match("^%a+://([^/]+)")

-- WRK_AUTHZ: an Authorization header for every request (Okta API calls all carry a token).
local authorization = os.getenv("WRK_AUTHZ")
if authorization == "" then authorization = nil end

request = function()
  if target and target ~= "" then
    return wrk.format("GET", target, { Host = authority, Authorization = authorization })
  end
  return wrk.format("GET", wrk.path, { Authorization = authorization })
end

response = function(status, headers, body)
  count = count + 1
  if max_requests > 0 and count >= max_requests then
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
