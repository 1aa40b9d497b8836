-- Apply outcomes of running jobs; each must carry the job's current fencing token.
-- ARGV: retention_ms, done_channel, n, then per outcome: kind, id, token, owner ('' for
-- any), body, delay_ms.
-- kind: C complete (body: result) | F failed for good (body: error) | R retry after
-- delay_ms (body: error) | L release, no attempt charged | X cancel acknowledged.
-- Reply: 1 (applied) or 0 (refused: the lease is no longer the caller's) per outcome.
-- Records are read once for the batch and kept in `state`, so two outcomes for one job in
-- the same batch see each other: the second is refused, as it would be one call later.
local now = now_ms()
local retention_ms, done_channel, n = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local ids = {}
for i = 0, n - 1 do ids[#ids + 1] = ARGV[4 + i * 6 + 1] end
local found = hmget(REC, ids)
local state = {}
for i, id in ipairs(ids) do
  if state[id] == nil then state[id] = found[i] and dec(found[i]) or false end
end
local changed, order = {}, {}
local results, errors, clear_errors, released = {}, {}, {}, {}
local ended, expiry, scheduled, unleased = {}, {}, {}, {}
local applied = {}
for i = 0, n - 1 do
  local b = 4 + i * 6
  local kind, id, token, owner = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3]
  local body, delay = ARGV[b + 4], ARGV[b + 5]
  local r = state[id]
  if not r or r.st ~= 'InProgress' or r.tok ~= token or (owner ~= '' and r.ow ~= owner) then
    applied[#applied + 1] = 0
  else
    applied[#applied + 1] = 1
    unleased[#unleased + 1] = id
    r.ow = ''
    r.up = ms(now)
    if kind == 'C' then
      r.st = 'Completed'
      results[#results + 1] = id
      results[#results + 1] = body
      if r.rt > 0 then clear_errors[#clear_errors + 1] = id end  -- only retries left one
    elseif kind == 'X' or r.cn == '1' then
      -- A cancel request outranks a retry or a release: the user asked for it.
      r.st = 'Canceled'
      if kind == 'F' or kind == 'R' then
        errors[#errors + 1] = id
        errors[#errors + 1] = body
      end
    elseif kind == 'F' then
      r.st = 'Failed'
      errors[#errors + 1] = id
      errors[#errors + 1] = body
    elseif kind == 'R' then
      r.st = 'Scheduled'
      r.rt = r.rt + 1
      errors[#errors + 1] = id
      errors[#errors + 1] = body
      scheduled[#scheduled + 1] = now + tonumber(delay)
      scheduled[#scheduled + 1] = id
    else
      r.st = 'Queued'
      released[#released + 1] = id
    end
    if TERMINAL[r.st] then
      r.co = ms(now)
      ended[#ended + 1] = id
      expiry[#expiry + 1] = now + retention_ms
      expiry[#expiry + 1] = id
    end
    if not changed[id] then
      changed[id] = true
      order[#order + 1] = id
    end
  end
end
if #order > 0 then
  local writes = {}
  for _, id in ipairs(order) do
    writes[#writes + 1] = id
    writes[#writes + 1] = enc(state[id])
  end
  call_many('HSET', REC, writes)
  call_many('ZREM', LEASES, unleased)
end
if #results > 0 then call_many('HSET', OUT, results) end
if #clear_errors > 0 then call_many('HDEL', ERR, clear_errors) end
if #errors > 0 then call_many('HSET', ERR, errors) end
if #scheduled > 0 then call_many('ZADD', SCHEDULED, scheduled) end
if #released > 0 then
  enqueue_front(released)
end
if #ended > 0 then
  call_many('ZADD', EXPIRY, expiry)
  -- Long-pollers registered in `watch` hear of the end; nobody else pays for it.
  if redis.call('ZCARD', WATCH) > 0 then
    local watched = read_many('ZMSCORE', WATCH, ended)
    for i, id in ipairs(ended) do
      if watched[i] then
        redis.call('ZREM', WATCH, id)
        -- The new state rides along, so the long-poll answers without reading the job.
        local result = redis.call('HGET', OUT, id) or ''
        local err = redis.call('HGET', ERR, id) or ''
        redis.call('PUBLISH', done_channel,
                   table.concat({id, enc(state[id]), err, result}, '\0'))
      end
    end
  end
end
return applied
