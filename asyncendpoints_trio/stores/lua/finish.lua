-- Apply outcomes of running jobs; each must carry the job's current fencing token.
-- ARGV: retention_ms, done_channel, n, then per outcome: kind, id, token, owner ('' for
-- any), body, delay_ms, history fields (JSON members for the attempt's history line, or ''),
-- progress (the handler's last report not yet written, or '').
-- kind: C complete (body: result) | F failed for good (body: error) | R retry after
-- delay_ms (body: error) | L release of a run that started, no attempt charged | l release
-- of a job whose handler never started | X cancel acknowledged.
-- Every run gets a line in the job's history, but for the common case (a first run that
-- completed), which the record itself tells.
-- Reply: 1 (applied) or 0 (refused: the lease is no longer the caller's) per outcome.
-- Records are read once for the batch and kept in `state`, so two outcomes for one job in
-- the same batch see each other: the second is refused, as it would be one call later.
local now = now_ms()
local retention_ms, done_channel, n = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local ids = {}
local F = 8  -- fields per outcome
for i = 0, n - 1 do ids[#ids + 1] = ARGV[4 + i * F + 1] end
local found = hmget(REC, ids)
local state = {}
for i, id in ipairs(ids) do
  if state[id] == nil then state[id] = found[i] and dec(found[i]) or false end
end
local changed, order = {}, {}
local lines = {}  -- id -> history lines to append, in order
local results, errors, clear_errors, released = {}, {}, {}, {}
local reports, moved = {}, {}
local ended, expiry, scheduled, unleased = {}, {}, {}, {}
local applied = {}
for i = 0, n - 1 do
  local b = 4 + i * F
  local kind, id, token, owner = ARGV[b], ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 3]
  local body, delay, fields, progress = ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7]
  local r = state[id]
  if not r or r.st ~= 'InProgress' or r.tok ~= token or (owner ~= '' and r.ow ~= owner) then
    applied[#applied + 1] = 0
  else
    applied[#applied + 1] = 1
    unleased[#unleased + 1] = id
    local label = nil
    if kind == 'C' then label = 'Completed'
    elseif kind == 'l' then label = nil
    elseif kind == 'X' or r.cn == '1' then label = 'Canceled'
    elseif kind == 'F' then label = 'Failed'
    elseif kind == 'R' then label = 'Retrying'
    else label = 'Released' end
    if label then
      lines[id] = lines[id] or {}
      table.insert(lines[id], {attempt_line(r, label, fields), kind == 'C' and r.rt == 0})
    end
    if r.cn == PUSHED then
      -- Never renewed: it may still wait in its inbox (a release of a job the owner never
      -- popped), and must not be popped after this.
      unpush(r.ow, id)
      r.cn = '0'
    end
    r.ow = ''
    touch(r)
    if progress ~= '' then
      reports[#reports + 1] = id
      reports[#reports + 1] = progress
    end
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
      r.du = ms(STAMP + tonumber(delay) * 1000)
      r.rt = r.rt + 1
      errors[#errors + 1] = id
      errors[#errors + 1] = body
      scheduled[#scheduled + 1] = now + tonumber(delay)
      scheduled[#scheduled + 1] = id
    else
      r.st = 'Queued'
      r.du = ms(STAMP)
      released[#released + 1] = id
    end
    if TERMINAL[r.st] then
      r.co = ms(STAMP)
      ended[#ended + 1] = id
      expiry[#expiry + 1] = now + retention_ms
      expiry[#expiry + 1] = id
    else
      moved[#moved + 1] = id
    end
    if not changed[id] then
      changed[id] = true
      order[#order + 1] = id
    end
  end
end
if #order > 0 then
  local writes = {}
  local completed, failed = 0, 0
  for _, id in ipairs(order) do
    local r = state[id]
    local st = r.st
    index_shift(id, r.cr, name_of(id, r), 'InProgress', st)
    writes[#writes + 1] = id
    writes[#writes + 1] = enc(r)
    if st == 'Completed' then completed = completed + 1 end
    if st == 'Failed' then failed = failed + 1 end
  end
  index_flush()
  count_rate(now, 'c', completed)
  count_rate(now, 'f', failed)
  call_many('HSET', REC, writes)
  call_many('ZREM', LEASES, unleased)
  local with_lines = {}
  for _, id in ipairs(order) do
    if lines[id] then with_lines[#with_lines + 1] = id end
  end
  if #with_lines > 0 then
    local histories = hmget(HIST, with_lines)
    local hist_writes = {}
    for i, id in ipairs(with_lines) do
      local history = histories[i] or ''
      for _, entry in ipairs(lines[id]) do
        -- A first run that completed leaves no line unless there is history already.
        if not (entry[2] and history == '') then history = with_line(history, entry[1]) end
      end
      if history ~= '' and history ~= histories[i] then
        hist_writes[#hist_writes + 1] = id
        hist_writes[#hist_writes + 1] = history
      end
    end
    if #hist_writes > 0 then call_many('HSET', HIST, hist_writes) end
  end
end
if #results > 0 then call_many('HSET', OUT, results) end
if #reports > 0 then call_many('HSET', PROG, reports) end
notify(moved)
if #clear_errors > 0 then call_many('HDEL', ERR, clear_errors) end
if #errors > 0 then call_many('HSET', ERR, errors) end
if #scheduled > 0 then
  call_many('ZADD', SCHEDULED, scheduled)
  -- An idle instance waits without knowing of this retry: wake one to learn its due time.
  wake()
end
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
        local history = redis.call('HGET', HIST, id) or ''
        local progress = redis.call('HGET', PROG, id) or ''
        -- Length-prefixed (frame), as inbox entries: a record may hold NUL (name \0 idem).
        redis.call(PUBLISH_CMD, done_channel, table.concat({frame(id), frame(enc(state[id])),
                   frame(err), frame(result), frame(history), frame(progress)}))
      end
    end
  end
end
return applied
