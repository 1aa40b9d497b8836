-- An idle instance stops waiting for pushes (it is stopping, or its pop was cut off): its
-- registration ends, and the jobs still in its inbox go back to the front of the queue,
-- not charged (none of them started). ARGV: owner. Reply: how many went back.
local now = now_ms()
local owner = ARGV[1]
redis.call('HDEL', IDLE, owner)
local back, created = {}, {}
for _, id in ipairs(take_inbox(owner)) do
  local r = get_record(id)
  if r.cn == PUSHED then
    redis.call('ZREM', LEASES, id)
    unstarted(r)
    redis.call('HSET', REC, id, enc(r))
    back[#back + 1] = id
    created[#created + 1] = r.cr
  end
end
if #back > 0 then
  local names = names_of(back)
  for i, id in ipairs(back) do index_move(id, created[i], names[i], 'InProgress', 'Queued') end
  index_flush()
end
enqueue_front(back)
notify(back)
return #back
