-- Register interest in a job's end (finish publishes on the done channel while the entry
-- lives), then read the job: registering first means no end can slip between the two.
-- ARGV: id, ttl_ms. Reply: as get.lua.
-- GT: a shorter long-poll must not cut a longer one's registration short.
redis.call('ZADD', WATCH, 'GT', now_ms() + tonumber(ARGV[2]), ARGV[1])
return snapshot(ARGV[1])
