-- Sweep: reclaim expired leases, promote due retries, purge terminal jobs past retention.
-- Bounded by `limit` per kind; idempotent; safe on every instance at once.
-- ARGV: limit, retention_ms, done_channel, error JSON for a reclaim, for a final failure,
-- the message for the attempt's history line (JSON-escaped).
-- Reply: {reclaimed, expired_failed, promoted, purged, ms until the next lease deadline or
-- retry due time (-1: none)}.
local now = now_ms()
local limit, retention_ms, done_channel = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local reclaimed, failed = 0, 0
local back = {}
local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, limit)
local ended_failed = 0
for _, id in ipairs(expired) do
  redis.call('ZREM', LEASES, id)
  local r = get_record(id)
  if r and r.st == 'InProgress' then
    -- Every branch below ends its lease: back to the queue, or to an end.
    index_move(id, r.cr, name_of(id, r), 'InProgress', nil)
  end
  if r and r.st == 'InProgress' and r.cn == PUSHED then
    -- Pushed, never started (its owner died idle, or lost the pop's reply): back to the
    -- front of the queue, not charged. Its owner's registration goes too: an instance
    -- that let a pushed lease expire is not taking pushes.
    unpush(r.ow, id)
    redis.call('HDEL', IDLE, r.ow)
    unstarted(r)
    redis.call('HSET', REC, id, enc(r))
    index_move(id, r.cr, r.nm, nil, r.st)
    back[#back + 1] = id
    reclaimed = reclaimed + 1
  elseif r and r.st == 'InProgress' then
    local line
    if r.cn == '1' then
      line = attempt_line(r, 'Canceled', '')
    else
      line = attempt_line(r, 'LeaseExpired', '"c":"LeaseExpired","m":"' .. ARGV[6] .. '"')
    end
    redis.call('HSET', HIST, id, with_line(redis.call('HGET', HIST, id), line))
    r.ow = ''
    touch(r)
    if r.cn == '1' then
      r.st = 'Canceled'
      terminal(id, r, now, retention_ms, done_channel)
      failed = failed + 1
    elseif r.rt < r.mx then
      r.st = 'Queued'
      r.du = ms(STAMP)
      r.rt = r.rt + 1
      redis.call('HSET', ERR, id, ARGV[4])
      back[#back + 1] = id
      reclaimed = reclaimed + 1
    else
      r.st = 'Failed'
      redis.call('HSET', ERR, id, ARGV[5])
      terminal(id, r, now, retention_ms, done_channel)
      failed = failed + 1
      ended_failed = ended_failed + 1
    end
    redis.call('HSET', REC, id, enc(r))
    index_move(id, r.cr, r.nm, nil, r.st)
  end
end
enqueue_front(back)
notify(back)
prune_idle(now)
local promoted = promote(now, limit)
local purged = 0
local old = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(old) do
  local r = get_record(id)
  if r then index_move(id, r.cr, name_of(id, r), r.st, nil) end
  if r and r.idem ~= '' then
    local seen = redis.call('HGET', IDEM, r.idem)
    if seen and string.sub(seen, 1, #id + 1) == id .. '|' then
      redis.call('HDEL', IDEM, r.idem)
    end
  end
  redis.call('HDEL', REC, id)
  redis.call('HDEL', DATA, id)
  redis.call('HDEL', OUT, id)
  redis.call('HDEL', ERR, id)
  redis.call('HDEL', HIST, id)
  redis.call('HDEL', PROG, id)
  redis.call('HDEL', AUDIT, id)
  redis.call('ZREM', EXPIRY, id)
  purged = purged + 1
end
index_flush()
count_rate(now, 'f', ended_failed)
-- Rate buckets older than the stats show (15 minutes) go; a few dozen fields at most.
local oldest = math.floor(now / 60000) - 16
for _, field in ipairs(redis.call('HKEYS', RATES)) do
  if tonumber(string.match(field, '^(%d+)')) < oldest then redis.call('HDEL', RATES, field) end
end
redis.call('ZREMRANGEBYSCORE', WATCH, '-inf', now)
local next_in = -1
for _, key in ipairs({LEASES, SCHEDULED}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local due = math.max(0, tonumber(first[2]) - now)
    if next_in < 0 or due < next_in then next_in = due end
  end
end
return {reclaimed, failed, promoted, purged, next_in}
