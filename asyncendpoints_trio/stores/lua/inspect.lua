-- Read one job for an operator (admin API). ARGV: id.
-- Reply: {lease deadline in ms or false, snapshot...} (the snapshot's fields nil when absent).
local id = ARGV[1]
return {redis.call('ZSCORE', LEASES, id) or false, unpack(snapshot(id))}
