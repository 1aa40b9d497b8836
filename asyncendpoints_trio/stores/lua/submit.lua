-- Store new jobs as Queued, in order. ARGV: max_queued (-1: no limit), n, then per job:
-- id, max_retries, data, idempotency key ('' for none), fingerprint.
-- Reply per job: {1, created_ms} new | {2, id} same key and request: that job |
-- {3, id} conflict (key reused with another request, or the id exists) | {4, ''} queue full.
-- Reads and writes go in one variadic call each for the whole batch.
local now = now_ms()
local max_queued = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local queued = redis.call('LLEN', KEYS[5])
local ids, keys = {}, {}
for i = 0, n - 1 do
  ids[#ids + 1] = ARGV[3 + i * 5]
  local idem = ARGV[3 + i * 5 + 3]
  if idem ~= '' then keys[#keys + 1] = idem end
end
local existing = hmget(KEYS[1], ids)
local seen_keys = {}
if #keys > 0 then
  local found = hmget(KEYS[9], keys)
  for i, key in ipairs(keys) do
    if found[i] then seen_keys[key] = found[i] end
  end
end
local taken = {}  -- ids stored by this very batch
local records, datas, order, idems = {}, {}, {}, {}
local replies = {}
for i = 0, n - 1 do
  local b = 3 + i * 5
  local id, mx, data, idem, fp = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local seen = idem ~= '' and seen_keys[idem]
  if seen then
    local sep = string.find(seen, '|', 1, true)
    local other = string.sub(seen, 1, sep - 1)
    if string.sub(seen, sep + 1) == fp then
      replies[#replies + 1] = {2, other}
    else
      replies[#replies + 1] = {3, other}
    end
  elseif existing[i + 1] or taken[id] then
    replies[#replies + 1] = {3, id}
  elseif max_queued >= 0 and queued >= max_queued then
    replies[#replies + 1] = {4, ''}
  else
    local r = {st = 'Queued', tok = 0, rt = 0, mx = tonumber(mx), cn = '0', cr = ms(now),
               sa = '', co = '', up = ms(now), ow = '', idem = idem}
    records[#records + 1] = id
    records[#records + 1] = enc(r)
    datas[#datas + 1] = id
    datas[#datas + 1] = data
    order[#order + 1] = id
    if idem ~= '' then
      idems[#idems + 1] = idem
      idems[#idems + 1] = id .. '|' .. fp
      seen_keys[idem] = id .. '|' .. fp
    end
    taken[id] = true
    queued = queued + 1
    replies[#replies + 1] = {1, ms(now)}
  end
end
if #order > 0 then
  call_many('HSET', KEYS[1], records)
  call_many('HSET', KEYS[2], datas)
  call_many('RPUSH', KEYS[5], order)
  if #idems > 0 then call_many('HSET', KEYS[9], idems) end
  wake()
end
return replies
