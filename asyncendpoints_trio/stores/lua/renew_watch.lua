-- Renew the registrations (WATCH) of jobs that event streams here follow, and say each
-- one's version: the fan-out reads in full only the jobs that changed since it last saw
-- them, so a quiet stream costs a few bytes per refresh, not its job's payload and result.
-- ARGV: ttl_ms, then ids. Reply per id: its version, or -1 when the job is gone.
local until_ms = now_ms() + tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local records = hmget(REC, ids)
local versions, entries = {}, {}
for i, id in ipairs(ids) do
  if records[i] then
    versions[i] = dec(records[i]).ver
    entries[#entries + 1] = until_ms
    entries[#entries + 1] = id
  else
    versions[i] = -1
  end
end
local i = 1
while i <= #entries do
  local j = math.min(i + SLICE - 1, #entries)
  -- GT: a longer long-poll's registration is never cut short.
  redis.call('ZADD', WATCH, 'GT', unpack(entries, i, j))
  i = j + 1
end
return versions
