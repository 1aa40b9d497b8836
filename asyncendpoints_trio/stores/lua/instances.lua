-- The live instances (admin API), read-only: presence records not yet expired on this
-- server's clock. Reply: {id, record, ...}.
local now = now_ms()
local all = redis.call('HGETALL', PRESENCE)
local live = {}
for i = 1, #all, 2 do
  if tonumber(string.match(all[i + 1], '^(%d+)')) > now then
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  end
end
return live
