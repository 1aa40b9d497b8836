-- An idle instance stops waiting for pushes (it is stopping, or its pop was cut off): its
-- registration ends, and the jobs still in its inbox go back to the front of the queue,
-- not charged (none of them started). ARGV: owner. Reply: how many went back.
local now = now_ms()
local owner = ARGV[1]
redis.call('HDEL', IDLE, owner)
local back = {}
for _, id in ipairs(take_inbox(owner)) do
  local r = get_record(id)
  if r.cn == PUSHED then
    redis.call('ZREM', LEASES, id)
    index_move(id, r.cr, name_of(id, r), 'InProgress', 'Queued')
    unstarted(r)
    redis.call('HSET', REC, id, enc(r))
    back[#back + 1] = id
  end
end
index_flush()
enqueue_front(back)
notify(back)
return #back
