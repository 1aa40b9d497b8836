-- An operator's retry (admin API): a Failed or Canceled job back at the end of the queue
-- with a fresh attempt budget (retryCount 0). Its error, result and times of the last run
-- go, its history stays, its retention ends, and its audit keeps who asked, and when.
-- ARGV: id, who as JSON (a string or null).
-- Reply: {applied (1|0), snapshot...} ({0} alone when there is no such job).
local now = now_ms()
local id, by_json = ARGV[1], ARGV[2]
local r = get_record(id)
if not r then return {0} end
if r.st == 'Failed' or r.st == 'Canceled' then
  local was = r.st
  index_move(id, r.cr, name_of(id, r), was, 'Queued')
  r.st = 'Queued'
  r.rt = 0
  r.sa = ''
  r.co = ''
  r.ow = ''
  r.cn = '0'
  r.du = ms(STAMP)
  touch(r)
  redis.call('HSET', REC, id, enc(r))
  redis.call('HDEL', ERR, id)
  redis.call('HDEL', OUT, id)
  redis.call('ZREM', EXPIRY, id)
  audit(id, 'retry', by_json)
  index_flush()
  enqueue_back({id}, {r.pr})
  notify({id})
  local s = snapshot(id)
  return {1, unpack(s)}
end
return {0, unpack(snapshot(id))}
