-- Store new jobs, in order: Queued, or Scheduled when they start after a delay.
-- ARGV: max_queued (-1: no limit), n, then per job: id, max_retries, data, idempotency key
-- ('' for none), fingerprint, priority, delay_ms (0: now).
-- Reply per job, by kind:
--   {'new', created_us}                              stored now
--   {'same', id, record, data, result, error, history, progress} that job exists already: the same
--                                                    key and request, or (no key) the same
--                                                    id and data sent again after a reply
--                                                    was lost
--   {'conflict', id}                                 the key was used for another request,
--                                                    or the id belongs to another job
--   {'full'}                                         the queue holds max_queued jobs
-- Reads and writes go in one variadic call each for the whole batch.
local now = now_ms()
local stamp = ms(STAMP)  -- every new job's created and updated time
local max_queued = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local F = 7  -- fields per job
local queued = redis.call('ZCARD', READY)
local ids, keys = {}, {}
for i = 0, n - 1 do
  ids[#ids + 1] = ARGV[3 + i * F]
  local idem = ARGV[3 + i * F + 3]
  if idem ~= '' then keys[#keys + 1] = idem end
end
local existing = hmget(REC, ids)
local seen_keys = {}
if #keys > 0 then
  local found = hmget(IDEM, keys)
  for i, key in ipairs(keys) do
    if found[i] then seen_keys[key] = found[i] end
  end
end
local taken = {}  -- ids stored by this very batch: id -> {record, data}
local records, datas, order, priorities, idems, later = {}, {}, {}, {}, {}, {}
local names, statuses = {}, {}  -- the new jobs', in the order of `records`
local pushed = {}  -- id -> true: a new job push() leased at once
local replies = {}

local function same(id)
  if taken[id] then
    return {'same', id, taken[id][1], taken[id][2], false, false, false, false}
  end
  local s = snapshot(id)
  return {'same', id, s[1], s[2], s[3], s[4], s[5], s[6]}
end

for i = 0, n - 1 do
  local b = 3 + i * F
  local id, mx, data, idem, fp = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local priority, delay = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  local seen = idem ~= '' and seen_keys[idem]
  local other = nil
  if seen then
    local sep = string.find(seen, '|', 1, true)
    other = string.sub(seen, 1, sep - 1)
    if taken[other] == nil and not redis.call('HEXISTS', REC, other) then
      other = nil  -- a key whose job is gone: free again
    elseif string.sub(seen, sep + 1) ~= fp then
      replies[#replies + 1] = {'conflict', other}
    else
      replies[#replies + 1] = same(other)
    end
  end
  if other then
    -- answered above
  elseif existing[i + 1] or taken[id] then
    if idem == '' and not taken[id] and redis.call('HGET', DATA, id) == data then
      replies[#replies + 1] = same(id)
    else
      replies[#replies + 1] = {'conflict', id}
    end
  elseif max_queued >= 0 and queued >= max_queued then
    replies[#replies + 1] = {'full'}
  else
    local name = string.match(data, '^([^%z]*)')
    -- The record, as enc() would write it for a new job, in one concatenation: no table
    -- per job (ms() formats each distinct max_retries and priority once per run).
    local st, du = 'Queued', ''
    if delay > 0 then
      st, du = 'Scheduled', ms(STAMP + delay * 1000)
      later[#later + 1] = now + delay
      later[#later + 1] = id
    else
      order[#order + 1] = id
      priorities[#priorities + 1] = priority
      queued = queued + 1
    end
    local record = st .. '|0|0|' .. ms(tonumber(mx)) .. '|0|' .. stamp .. '|||' .. stamp ..
                   '||' .. ms(priority) .. '|' .. du .. '|1|' .. name .. '\0' .. idem
    records[#records + 1] = id
    records[#records + 1] = record
    datas[#datas + 1] = id
    datas[#datas + 1] = data
    names[#names + 1] = name
    statuses[#statuses + 1] = st
    if idem ~= '' then
      idems[#idems + 1] = idem
      idems[#idems + 1] = id .. '|' .. fp
      seen_keys[idem] = id .. '|' .. fp
    end
    taken[id] = {record, data}
    replies[#replies + 1] = {'new', stamp}
  end
end
-- Push dispatch: when nothing else waits, lease the new jobs straight to idle instances, in
-- the order a claim would take them, and put each on its instance's inbox with all the
-- instance needs to run it, so the instance's blocking pop returns it ready to run.
local function push(live)
  table.sort(live, function(a, b) return a[2] > b[2] end)  -- the freshest first
  for _, reg in ipairs(live) do
    local owner, exp, free, lease_ms = reg[1], reg[2], reg[3], reg[4]
    local popped = redis.call('ZPOPMIN', READY, free)
    if #popped == 0 then break end
    local writes, leases, ids, box = {}, {}, {}, {}
    for i = 1, #popped, 2 do
      local id = popped[i]
      local r = dec(taken[id][1])
      r.st = 'InProgress'
      r.tok = r.tok + 1
      r.ow = owner
      r.sa = ms(STAMP)
      r.cn = PUSHED
      touch(r)
      local s = enc(r)
      ids[#ids + 1] = id
      writes[#writes + 1] = id
      writes[#writes + 1] = s
      leases[#leases + 1] = now + lease_ms
      leases[#leases + 1] = id
      box[#box + 1] = frame(id) .. frame(ms(r.tok)) .. frame(s) .. frame(taken[id][2]) ..
                      '--'
      pushed[id] = true
    end
    call_many('HSET', REC, writes)
    call_many('ZADD', LEASES, leases)
    call_many('RPUSH', inbox(owner), box)
    notify(ids)
    if #ids < free then
      redis.call('HSET', IDLE, owner, ms(exp) .. '|' .. ms(free - #ids) .. '|' .. ms(lease_ms))
    else
      redis.call('HDEL', IDLE, owner)
    end
  end
end

if #records > 0 then
  call_many('HSET', REC, records)
  call_many('HSET', DATA, datas)
  if #idems > 0 then call_many('HSET', IDEM, idems) end
  -- Only into an empty line: a pushed job must not overtake one that waits (and jobs that
  -- wait are for claims, which a wake-up brings).
  local pushing = #order > 0 and redis.call('ZCARD', READY) == 0
  enqueue_back(order, priorities, pushing)
  if pushing then
    local live = prune_idle(now)
    if #live > 0 then push(live) end
    if redis.call('ZCARD', READY) > 0 then wake() end
  end
  if #later > 0 then
    call_many('ZADD', SCHEDULED, later)
    -- An idle instance learns the new due time from the claim this wakes it for.
    wake()
  end
  -- The new jobs' members, each under its status now (a pushed job's is InProgress
  -- already): one ZADD per status.
  for k = 1, #names do
    local id = records[2 * k - 1]
    local st = pushed[id] and 'InProgress' or statuses[k]
    local into = ENTER[st] or entering(st)
    into[#into + 1] = '0'
    into[#into + 1] = member(names[k], st, stamp, id)
  end
  index_flush()
  count_rate(now, 's', #records / 2)
end
return replies
