-- Move up to `limit` Queued jobs to InProgress under leases held by `owner`; every claim
-- increments the job's fencing token. Due retries are promoted first.
-- ARGV: owner, limit, lease_ms. Reply: {claimed, next_due_in_ms (-1: none)} where each
-- claimed entry is {id, record, data, error}.
local now = now_ms()
local owner, limit, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
promote(now, math.max(limit, 64))
local claimed = {}
local ids = redis.call('LPOP', KEYS[5], limit)
if ids then
  for _, id in ipairs(ids) do
    local r = get_record(id)
    if r and r.st == 'Queued' then
      r.st = 'InProgress'
      r.tok = r.tok + 1
      r.ow = owner
      r.sa = ms(now)
      r.up = ms(now)
      local s = enc(r)
      redis.call('HSET', KEYS[1], id, s)
      redis.call('ZADD', KEYS[7], now + lease_ms, id)
      claimed[#claimed + 1] = {id, s, redis.call('HGET', KEYS[2], id),
                               redis.call('HGET', KEYS[4], id)}
    end
  end
end
-- More work than we took: pass the wake-up on to the next idle instance.
if redis.call('LLEN', KEYS[5]) > 0 then wake() end
local next_due = -1
local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if first[2] then next_due = math.max(0, tonumber(first[2]) - now) end
return {claimed, next_due}
