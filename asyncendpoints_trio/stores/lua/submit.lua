-- Store new jobs as Queued, in order. ARGV: max_queued (-1: no limit), n, then per job:
-- id, max_retries, data, idempotency key ('' for none), fingerprint.
-- Reply per job: {1, created_ms} new | {2, id} same key and request: that job |
-- {3, id} conflict (key reused with another request, or the id exists) | {4, ''} queue full.
local now = now_ms()
local max_queued = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local queued = redis.call('LLEN', KEYS[5])
local replies = {}
local created = 0
for i = 0, n - 1 do
  local b = 3 + i * 5
  local id, mx, data, idem, fp = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local seen = nil
  if idem ~= '' then seen = redis.call('HGET', KEYS[9], idem) end
  if seen then
    local sep = string.find(seen, '|', 1, true)
    local other = string.sub(seen, 1, sep - 1)
    if string.sub(seen, sep + 1) == fp then
      replies[#replies + 1] = {2, other}
    else
      replies[#replies + 1] = {3, other}
    end
  elseif redis.call('HEXISTS', KEYS[1], id) == 1 then
    replies[#replies + 1] = {3, id}
  elseif max_queued >= 0 and queued >= max_queued then
    replies[#replies + 1] = {4, ''}
  else
    local r = {st = 'Queued', tok = 0, rt = 0, mx = tonumber(mx), cn = '0', cr = ms(now),
               sa = '', co = '', up = ms(now), ow = '', idem = idem}
    redis.call('HSET', KEYS[1], id, enc(r))
    redis.call('HSET', KEYS[2], id, data)
    redis.call('RPUSH', KEYS[5], id)
    if idem ~= '' then redis.call('HSET', KEYS[9], idem, id .. '|' .. fp) end
    queued = queued + 1
    created = created + 1
    replies[#replies + 1] = {1, ms(now)}
  end
end
if created > 0 then wake() end
return replies
