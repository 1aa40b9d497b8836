-- Standalone (sent with EVAL, pipelined before the instance's BLPOP, so that a script cache
-- the server lost cannot leave that BLPOP unregistered): an idle instance offers to take
-- up to `free` pushed jobs under leases of `lease_ms` for the next `wait_ms`, less the jobs
-- already waiting in its inbox. Those are renewed to now + lease_ms: the instance counts
-- the lease of whatever this pop returns from the moment it sent it, and a job pushed
-- before that (between two waits) must not have an earlier deadline on the server.
-- KEYS: the idle hash, the instance's inbox, the lease set.
-- ARGV: owner, free, lease_ms, wait_ms. Reply: the number offered.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[3])
local waiting = redis.call('LRANGE', KEYS[2], 0, -1)
local free = tonumber(ARGV[2]) - #waiting
for _, e in ipairs(waiting) do
  local len, start = string.match(e, '^(%d+):()')  -- the entry's first frame: the job id
  local id = string.sub(e, start, start + tonumber(len) - 1)
  redis.call('ZADD', KEYS[3], 'XX', 'GT', now + lease_ms, id)
end
if free > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d|%d|%d', now + tonumber(ARGV[4]),
                                                    free, lease_ms))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return free
