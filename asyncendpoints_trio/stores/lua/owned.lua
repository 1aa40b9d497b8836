-- The leases held for one owner. ARGV: owner. Reply: flat list of id, token pairs.
-- A pass over every lease of the queue (held leases are few: the fleet's concurrency), run
-- only after a failed claim or at an instance's start.
local owner = ARGV[1]
local found = {}
local ids = redis.call('ZRANGE', LEASES, 0, -1)
local records = hmget(REC, ids)
for i, id in ipairs(ids) do
  local r = records[i] and dec(records[i])
  if r and r.st == 'InProgress' and r.ow == owner then
    found[#found + 1] = id
    found[#found + 1] = r.tok
  end
end
return found
