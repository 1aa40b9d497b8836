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
  local records = hmget(KEYS[1], ids)
  local taken, writes, leases = {}, {}, {}
  for i, id in ipairs(ids) do
    local r = records[i] and dec(records[i])
    if r and r.st == 'Queued' then
      r.st = 'InProgress'
      r.tok = r.tok + 1
      r.ow = owner
      r.sa = ms(now)
      r.up = ms(now)
      local s = enc(r)
      taken[#taken + 1] = id
      writes[#writes + 1] = id
      writes[#writes + 1] = s
      leases[#leases + 1] = now + lease_ms
      leases[#leases + 1] = id
      claimed[#claimed + 1] = {id, s}
    end
  end
  if #taken > 0 then
    call_many('HSET', KEYS[1], writes)
    call_many('ZADD', KEYS[7], leases)
    local datas = hmget(KEYS[2], taken)
    local errors = hmget(KEYS[4], taken)
    for i, entry in ipairs(claimed) do
      entry[3] = datas[i]
      entry[4] = errors[i]
    end
  end
end
-- More work than we took: pass the wake-up on to the next idle instance.
if redis.call('LLEN', KEYS[5]) > 0 then wake() end
local next_due = -1
local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if first[2] then next_due = math.max(0, tonumber(first[2]) - now) end
return {claimed, next_due}
