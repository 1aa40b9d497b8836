-- A write that changes nothing (INCRBY of the place-in-line counter by 0), so that a WAIT
-- after it, on the same connection, covers every write the server took before it.
-- Used when a submit with replicas_ack found its jobs already stored (see RedisStore._sync).
return redis.call('INCRBY', SEQ, 0)
