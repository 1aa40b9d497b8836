-- Extend the leases `owner` holds. ARGV: owner, lease_ms, n, then id, token, progress
-- triples (progress: the latest report's JSON, '' for none; written only where the lease
-- holds, so a fenced instance can no more change progress than anything else). The first
-- renewal of a pushed lease marks it started.
-- Reply: {lost ids, ids whose cancellation was requested}.
local now = now_ms()
local owner, lease_ms, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = {}
for i = 0, n - 1 do ids[#ids + 1] = ARGV[4 + i * 3] end
local records = hmget(REC, ids)
local lost, cancel, leases = {}, {}, {}
local reports, writes, reported = {}, {}, {}
for i, id in ipairs(ids) do
  local token = tonumber(ARGV[5 + (i - 1) * 3])
  local progress = ARGV[6 + (i - 1) * 3]
  local r = records[i] and dec(records[i])
  if r and r.st == 'InProgress' and r.tok == token and r.ow == owner then
    leases[#leases + 1] = now + lease_ms
    leases[#leases + 1] = id
    if r.cn == '1' then cancel[#cancel + 1] = id end
    -- A pushed job's first renewal: its owner has it, so from now on it is a started
    -- run, charged like any other if its lease expires (not a change anyone sees).
    local started = r.cn == PUSHED
    if started then r.cn = '0' end
    if progress ~= '' then
      bump(r)
      reports[#reports + 1] = id
      reports[#reports + 1] = progress
      reported[#reported + 1] = id
    end
    if started or progress ~= '' then
      writes[#writes + 1] = id
      writes[#writes + 1] = enc(r)
    end
  else
    lost[#lost + 1] = id
  end
end
if #leases > 0 then call_many('ZADD', LEASES, leases) end
if #writes > 0 then call_many('HSET', REC, writes) end
if #reports > 0 then
  call_many('HSET', PROG, reports)
  notify(reported)
end
return {lost, cancel}
