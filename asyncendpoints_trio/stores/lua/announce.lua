-- An instance renews its presence (admin API): it counts as live until now + ttl_ms, on
-- this server's clock. Records that lapsed go (the hash holds about one per instance).
-- ARGV: instance id, ttl_ms, its info (JSON). Reply: now_ms.
local now = now_ms()
redis.call('HSET', PRESENCE, ARGV[1], ms(now + tonumber(ARGV[2])) .. '|' .. ms(now) .. '|' ..
           ARGV[3])
local all = redis.call('HGETALL', PRESENCE)
for i = 1, #all, 2 do
  if tonumber(string.match(all[i + 1], '^(%d+)')) <= now then
    redis.call('HDEL', PRESENCE, all[i])
  end
end
return now
