-- Cancel a job: a waiting one at once, a running one by request (its owner hears through
-- the cancel channel now, or its next heartbeat). ARGV: id, retention_ms, cancel_channel,
-- done_channel, and for an operator's cancel (admin API) who, as JSON ('' for none: no
-- audit entry). Reply: the job's snapshot after the change, or nil when there is no job.
local now = now_ms()
local id, retention_ms, by_json = ARGV[1], tonumber(ARGV[2]), ARGV[5] or ''
local r = get_record(id)
if not r then return nil end
local was = r.st
local name = name_of(id, r)
local changed = true
if r.st == 'Queued' or r.st == 'Scheduled' then
  if r.st == 'Queued' then
    redis.call('ZREM', READY, id)
  else
    redis.call('ZREM', SCHEDULED, id)
  end
  r.st = 'Canceled'
  touch(r)
  r.du = ''
  terminal(id, r, now, retention_ms, ARGV[4])
  redis.call('HSET', REC, id, enc(r))
elseif r.st == 'InProgress' and r.cn == PUSHED and unpush(r.ow, id) then
  -- Pushed to an idle instance that has not popped it yet: it never started, so it ends
  -- now, like a waiting job.
  redis.call('ZREM', LEASES, id)
  r.st = 'Canceled'
  r.ow = ''
  r.cn = '0'
  touch(r)
  terminal(id, r, now, retention_ms, ARGV[4])
  redis.call('HSET', REC, id, enc(r))
elseif r.st == 'InProgress' and r.cn ~= '1' then
  r.cn = '1'
  touch(r)
  redis.call('HSET', REC, id, enc(r))
  redis.call(PUBLISH_CMD, ARGV[3], id)
  notify({id})
else
  changed = false
end
if changed then
  index_move(id, r.cr, name, was, r.st)
  index_flush()
  if by_json ~= '' then audit(id, 'cancel', by_json) end
end
return snapshot(id)
