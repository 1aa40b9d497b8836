-- Standalone (sent with EVAL, pipelined before the instance's BLPOP, so that a script cache
-- the server lost cannot leave that BLPOP unregistered): an idle instance offers to take
-- up to `free` pushed jobs under leases of `lease_ms` for the next `wait_ms`, less the jobs
-- already waiting in its inbox. KEYS: the idle hash, the instance's inbox.
-- ARGV: owner, free, lease_ms, wait_ms. Reply: the number offered.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local free = tonumber(ARGV[2]) - redis.call('LLEN', KEYS[2])
if free > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d|%d|%d', now + tonumber(ARGV[4]),
                                                    free, tonumber(ARGV[3])))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return free
