-- Move up to `limit` Queued jobs to InProgress under leases held by `owner`; every claim
-- increments the job's fencing token. Due retries are promoted first.
-- A claiming instance is not blocked on its inbox: its idle registration ends, and the
-- jobs pushed to it that it has not popped yet come with this claim (they count against
-- `limit`; they are leased already, so their tokens do not move).
-- ARGV: owner, limit, lease_ms. Reply: {claimed, next_due_in_ms (-1: none)} where each
-- claimed entry is {id, record, data, error, progress}.
local now = now_ms()
local owner, limit, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HDEL', IDLE, owner)
local taken = take_inbox(owner)
if #taken > 0 then
  -- From now: the caller counts their leases from the moment it sent this claim.
  local renew = {}
  for _, id in ipairs(taken) do
    renew[#renew + 1] = now + lease_ms
    renew[#renew + 1] = id
  end
  call_many('ZADD', LEASES, renew)
end
promote(now, math.max(limit, 64))
local claimed = {}
for _, id in ipairs(taken) do claimed[#claimed + 1] = {id, redis.call('HGET', REC, id)} end
local popped = {}
if limit > #taken then popped = redis.call('ZPOPMIN', READY, limit - #taken) end
local ids = {}
for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
local fresh = {}
if #ids > 0 then
  local records = hmget(REC, ids)
  local writes, leases = {}, {}
  for i, id in ipairs(ids) do
    local r = records[i] and dec(records[i])
    if r and r.st == 'Queued' then
      r.st = 'InProgress'
      r.tok = r.tok + 1
      r.ow = owner
      r.sa = ms(STAMP)
      touch(r)
      index_shift(id, r.cr, name_of(id, r), 'Queued', 'InProgress')
      local s = enc(r)
      taken[#taken + 1] = id
      fresh[#fresh + 1] = id
      writes[#writes + 1] = id
      writes[#writes + 1] = s
      leases[#leases + 1] = now + lease_ms
      leases[#leases + 1] = id
      claimed[#claimed + 1] = {id, s}
    end
  end
  if #fresh > 0 then
    call_many('HSET', REC, writes)
    call_many('ZADD', LEASES, leases)
  end
end
if #taken > 0 then
  local datas = hmget(DATA, taken)
  local errors = hmget(ERR, taken)
  local reports = hmget(PROG, taken)
  for i, entry in ipairs(claimed) do
    entry[3] = datas[i]
    entry[4] = errors[i]
    entry[5] = reports[i]
  end
  notify(fresh)
end
index_flush()  -- the promoted and the claimed
-- More work than we took: pass the wake-up on to the next idle instance.
if redis.call('ZCARD', READY) > 0 then wake() end
local next_due = -1
local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
if first[2] then next_due = math.max(0, tonumber(first[2]) - now) end
return {claimed, next_due}
