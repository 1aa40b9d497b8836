-- Sweep: reclaim expired leases, promote due retries, purge terminal jobs past retention.
-- Bounded by `limit` per kind; idempotent; safe on every instance at once.
-- ARGV: limit, retention_ms, done_channel, error JSON for a reclaim, for a final failure.
-- Reply: {reclaimed, expired_failed, promoted, purged, ms until the next lease deadline or
-- retry due time (-1: none)}.
local now = now_ms()
local limit, retention_ms, done_channel = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local reclaimed, failed = 0, 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[7], id)
  local r = get_record(id)
  if r and r.st == 'InProgress' then
    r.ow = ''
    r.up = ms(now)
    if r.cn == '1' then
      r.st = 'Canceled'
      terminal(id, r, now, retention_ms, done_channel)
      failed = failed + 1
    elseif r.rt < r.mx then
      r.st = 'Queued'
      r.rt = r.rt + 1
      redis.call('HSET', KEYS[4], id, ARGV[4])
      redis.call('LPUSH', KEYS[5], id)
      reclaimed = reclaimed + 1
    else
      r.st = 'Failed'
      redis.call('HSET', KEYS[4], id, ARGV[5])
      terminal(id, r, now, retention_ms, done_channel)
      failed = failed + 1
    end
    redis.call('HSET', KEYS[1], id, enc(r))
  end
end
if reclaimed > 0 then wake() end
local promoted = promote(now, limit)
local purged = 0
local old = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(old) do
  local r = get_record(id)
  if r and r.idem ~= '' then
    local seen = redis.call('HGET', KEYS[9], r.idem)
    if seen and string.sub(seen, 1, #id + 1) == id .. '|' then
      redis.call('HDEL', KEYS[9], r.idem)
    end
  end
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZREM', KEYS[8], id)
  purged = purged + 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[11], '-inf', now)
local next_in = -1
for _, key in ipairs({KEYS[7], KEYS[6]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local due = math.max(0, tonumber(first[2]) - now)
    if next_in < 0 or due < next_in then next_in = due end
  end
end
return {reclaimed, failed, promoted, purged, next_in}
