#include "okta_sidecar/fleet/ledger_scripts.hpp"

namespace okta_sidecar::fleet {

// Per (tenant host, bucket): the newest window's limit, reset (Okta's epoch seconds, which
// orders windows the same way for every sidecar), its end on Redis's clock, the tokens leased
// in it (`used`) and the part of Limit a 429 showed is not ours (`foreign`, the token share).
// Observations merge as in bucket.cpp (as Okta's own Terraform provider merges them):
// a larger reset starts a new window; an older one is stale; the same window keeps the minimum
// Remaining, i.e. the largest use. A sidecar with nothing waiting hands unused tokens back
// (ARGV[10], for the window whose reset is ARGV[11]; void once a newer window is adopted), and
// a sidecar refused while tokens are out looks again within ARGV[12] ms rather than at the
// reset, so a window's budget is spent before it ends while requests wait anywhere. Tokens
// not handed back die with the window (its `used` is forgotten when the next one is adopted).
// Unknown or just-ended windows are opened by one probe at a time, fleet-wide.
const std::string_view lease_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = KEYS[1]
local want = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[8])
local probe_ms = tonumber(ARGV[9])
local f = redis.call('HMGET', k, 'limit', 'used', 'reset', 'reset_at', 'probe_until', 'foreign', 'seen')
local limit = tonumber(f[1])
local used = tonumber(f[2]) or 0
local reset = tonumber(f[3])
local reset_at = tonumber(f[4])
local probe_until = tonumber(f[5]) or 0
local foreign = tonumber(f[6]) or 0
local seen = tonumber(f[7]) or 0
local give_back = tonumber(ARGV[10]) or 0
local give_back_reset = tonumber(ARGV[11]) or -1
local recheck_ms = tonumber(ARGV[12]) or 0

if ARGV[2] == '1' then
  local ol = tonumber(ARGV[3])
  local orem = tonumber(ARGV[4])
  local oreset = tonumber(ARGV[5])
  local oin = tonumber(ARGV[6])
  local orej = ARGV[7] == '1'
  if orej and orem > 0 then foreign = math.max(foreign, orem) end
  if reset == nil or oreset > reset then
    if ol > 0 then limit = ol elseif limit == nil then limit = orem end
    reset = oreset
    reset_at = now + oin
    used = math.max(0, limit - orem)
    seen = used
    probe_until = 0
  elseif oreset < reset then
    -- a slow answer from a past window (a window's reset never changes)
  else
    if limit == nil then limit = math.max(ol, orem) end
    used = math.max(used, limit - orem)
    seen = math.max(seen, limit - orem)
    if orej and reset_at ~= nil and reset_at <= now then reset_at = now + 1000 end
  end
end
if limit ~= nil and foreign > limit - 1 then foreign = math.max(0, limit - 1) end
if give_back > 0 and reset ~= nil and give_back_reset == reset and reset_at ~= nil and now < reset_at then
  -- Never below what Okta's own Remaining showed as spent: tokens handed back were not used by
  -- this sidecar, but the org may have spent their share elsewhere.
  used = math.max(seen, used - give_back)
end

local granted, probe, retry = 0, 0, 0
if reset_at == nil or now >= reset_at then
  if want > 0 then
    if now >= probe_until then
      granted = 1
      probe = 1
      probe_until = now + probe_ms
    else
      retry = math.min(probe_until - now, 20)
    end
  end
else
  local left = math.max(0, limit - foreign) - used
  if want > 0 then
    if left > 0 then
      granted = math.min(want, left)
      used = used + granted
    elseif recheck_ms > 0 then
      retry = math.min(reset_at - now, recheck_ms)
    else
      retry = reset_at - now
    end
  end
end

local fields = {'used', used, 'probe_until', probe_until, 'foreign', foreign, 'seen', seen}
if limit ~= nil then table.insert(fields, 'limit'); table.insert(fields, limit) end
if reset ~= nil then table.insert(fields, 'reset'); table.insert(fields, reset) end
if reset_at ~= nil then table.insert(fields, 'reset_at'); table.insert(fields, reset_at) end
redis.call('HSET', k, unpack(fields))
redis.call('PEXPIRE', k, window_ms * 10)

local left_out, reset_in = 0, -1
if reset_at ~= nil and now < reset_at then
  left_out = math.max(0, math.max(0, limit - foreign) - used)
  reset_in = reset_at - now
end
return {granted, probe, limit or -1, left_out, reset or -1, reset_in, retry}
)lua";

// Every sidecar is a member with an expiry; its in-flight count per host carries the same
// expiry, so a sidecar that dies stops holding slots within ttl_ms. Each other member holds at
// least its fair share (cap / members) or what it really has in flight, whichever is larger:
// the sum of all allowances then stays within the tenant's cap.
// The adaptive in-flight cap is shared the same way: for each of the H hosts a sidecar may
// publish the back-off a concurrency 429 taught it (ARGV[3 + H + 2i - 1] cap, ARGV[3 + H + 2i]
// refused level; 0 = nothing new) into KEYS[1 + H + i], which keeps the latest lesson and a
// version; every heartbeat returns, after the H reservations, each host's lesson as
// cap, refused, version (0, 0, 0 when there is none).
const std::string_view heartbeat_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, id)
redis.call('PEXPIRE', KEYS[1], ttl * 10)
local n = redis.call('ZCARD', KEYS[1])
local fair = math.floor(cap / n)
local out = {n}
local hosts = (#KEYS - 1) / 2
for i = 2, hosts + 1 do
  redis.call('HSET', KEYS[i], id, ARGV[i + 2] .. ':' .. (now + ttl))
  redis.call('PEXPIRE', KEYS[i], ttl * 10)
  local all = redis.call('HGETALL', KEYS[i])
  local others = 0
  for j = 1, #all, 2 do
    if all[j] ~= id then
      local c, exp = string.match(all[j + 1], '^(%d+):(%d+)$')
      if c == nil or tonumber(exp) <= now then
        redis.call('HDEL', KEYS[i], all[j])
      else
        others = others + math.max(tonumber(c), fair)
      end
    end
  end
  out[#out + 1] = others
end
for h = 1, hosts do
  local ck = KEYS[1 + hosts + h]
  local lcap = tonumber(ARGV[3 + hosts + 2 * h - 1]) or 0
  local lref = tonumber(ARGV[3 + hosts + 2 * h]) or 0
  if lcap > 0 then
    redis.call('HSET', ck, 'cap', lcap, 'refused', lref)
    redis.call('HINCRBY', ck, 'version', 1)
  end
  local c = redis.call('HMGET', ck, 'cap', 'refused', 'version')
  if c[3] then redis.call('PEXPIRE', ck, 86400000) end
  out[#out + 1] = tonumber(c[1]) or 0
  out[#out + 1] = tonumber(c[2]) or 0
  out[#out + 1] = tonumber(c[3]) or 0
end
return out
)lua";

}  // namespace okta_sidecar::fleet
