-- Extend the leases `owner` holds. ARGV: owner, lease_ms, n, then id, token pairs.
-- Reply: {lost ids, ids whose cancellation was requested}.
local now = now_ms()
local owner, lease_ms, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local lost, cancel = {}, {}
for i = 0, n - 1 do
  local id, token = ARGV[4 + i * 2], tonumber(ARGV[5 + i * 2])
  local r = get_record(id)
  if r and r.st == 'InProgress' and r.tok == token and r.ow == owner then
    redis.call('ZADD', KEYS[7], now + lease_ms, id)
    if r.cn == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
