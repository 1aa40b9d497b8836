-- Apply outcomes of running jobs; each must carry the job's current fencing token.
-- ARGV: retention_ms, done_channel, n, then per outcome: kind, id, token, owner ('' for
-- any), body, delay_ms.
-- kind: C complete (body: result) | F failed for good (body: error) | R retry after
-- delay_ms (body: error) | L release, no attempt charged | X cancel acknowledged.
-- Reply: 1 (applied) or 0 (refused: the lease is no longer the caller's) per outcome.
local now = now_ms()
local retention_ms, done_channel, n = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local applied = {}
for i = 0, n - 1 do
  local b = 4 + i * 6
  local kind, id, token, owner = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3]
  local body, delay = ARGV[b + 4], ARGV[b + 5]
  local r = get_record(id)
  if not r or r.st ~= 'InProgress' or r.tok ~= token or (owner ~= '' and r.ow ~= owner) then
    applied[#applied + 1] = 0
  else
    applied[#applied + 1] = 1
    redis.call('ZREM', KEYS[7], id)
    r.ow = ''
    r.up = ms(now)
    if kind == 'C' then
      r.st = 'Completed'
      redis.call('HSET', KEYS[3], id, body)
      redis.call('HDEL', KEYS[4], id)
      terminal(id, r, now, retention_ms, done_channel)
    elseif kind == 'X' or r.cn == '1' then
      -- A cancel request outranks a retry or a release: the user asked for it.
      r.st = 'Canceled'
      if kind == 'F' or kind == 'R' then redis.call('HSET', KEYS[4], id, body) end
      terminal(id, r, now, retention_ms, done_channel)
    elseif kind == 'F' then
      r.st = 'Failed'
      redis.call('HSET', KEYS[4], id, body)
      terminal(id, r, now, retention_ms, done_channel)
    elseif kind == 'R' then
      r.st = 'Scheduled'
      r.rt = r.rt + 1
      redis.call('HSET', KEYS[4], id, body)
      redis.call('ZADD', KEYS[6], now + tonumber(delay), id)
    else
      r.st = 'Queued'
      redis.call('LPUSH', KEYS[5], id)
      wake()
    end
    redis.call('HSET', KEYS[1], id, enc(r))
  end
end
return applied
