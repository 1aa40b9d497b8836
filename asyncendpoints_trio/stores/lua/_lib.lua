-- Shared by every script (prepended at load time). All keys are declared, in this order,
-- and share one hash tag, so each script touches a single Cluster slot:
--   KEYS[1] rec       HASH  id -> job state record (see enc/dec below)
--   KEYS[2] data      HASH  id -> name \0 context JSON \0 payload JSON (written once)
--   KEYS[3] out       HASH  id -> result JSON
--   KEYS[4] err       HASH  id -> error JSON of the latest failure
--   KEYS[5] queue     LIST  ids of Queued jobs, oldest at the head
--   KEYS[6] scheduled ZSET  id -> due time (ms) of a retry
--   KEYS[7] leases    ZSET  id -> lease deadline (ms) of an InProgress job
--   KEYS[8] expiry    ZSET  id -> purge time (ms) of a terminal job (retention)
--   KEYS[9] idem      HASH  idempotency key -> id|fingerprint
--   KEYS[10] wake     LIST  at most one token: "there may be work", for BLPOP sleepers
--   KEYS[11] watch    ZSET  id -> until (ms): someone long-polls it; publish when it ends
-- Times come from this server's clock (TIME), never from the callers'.

local TERMINAL = {Completed = true, Failed = true, Canceled = true}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n)
  return string.format('%d', n)
end

-- The record: status|token|retries|maxRetries|cancel|created|started|completed|updated|owner|idem
-- (the idempotency key comes last because it may contain '|').
local PATTERN = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'

local function dec(s)
  local st, tok, rt, mx, cn, cr, sa, co, up, ow, idem = string.match(s, PATTERN)
  return {st = st, tok = tonumber(tok), rt = tonumber(rt), mx = tonumber(mx), cn = cn,
          cr = cr, sa = sa, co = co, up = up, ow = ow, idem = idem}
end

local function enc(r)
  return table.concat({r.st, ms(r.tok), ms(r.rt), ms(r.mx), r.cn, r.cr, r.sa, r.co, r.up,
                       r.ow, r.idem}, '|')
end

local function get_record(id)
  local s = redis.call('HGET', KEYS[1], id)
  if not s then return nil end
  return dec(s)
end

local function wake()
  if redis.call('LLEN', KEYS[10]) == 0 then redis.call('RPUSH', KEYS[10], '1') end
end

-- A job reached Completed, Failed or Canceled: start its retention clock, tell long-pollers.
local function terminal(id, r, now, retention_ms, done_channel)
  r.co = ms(now)
  redis.call('ZADD', KEYS[8], now + retention_ms, id)
  if redis.call('ZSCORE', KEYS[11], id) then
    redis.call('ZREM', KEYS[11], id)
    redis.call('PUBLISH', done_channel, id)
  end
end

-- Variadic commands in slices: Lua's unpack() has a stack limit, and one call per slice
-- instead of one per job is what keeps Redis' CPU per job low under load.
local SLICE = 4000

local function call_many(command, key, items)
  local i = 1
  while i <= #items do
    local j = math.min(i + SLICE - 1, #items)
    redis.call(command, key, unpack(items, i, j))
    i = j + 1
  end
end

local function read_many(command, key, ids)
  local values = {}
  local i = 1
  while i <= #ids do
    local j = math.min(i + SLICE - 1, #ids)
    local got = redis.call(command, key, unpack(ids, i, j))
    for k = 1, #got do values[i + k - 1] = got[k] end
    i = j + 1
  end
  return values
end

local function hmget(key, ids) return read_many('HMGET', key, ids) end

local function promote(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, limit)
  if #ids == 0 then return 0 end
  call_many('ZREM', KEYS[6], ids)
  local records = hmget(KEYS[1], ids)
  local writes, queued = {}, {}
  for i, id in ipairs(ids) do
    local r = records[i] and dec(records[i])
    if r and r.st == 'Scheduled' then
      r.st = 'Queued'
      r.up = ms(now)
      writes[#writes + 1] = id
      writes[#writes + 1] = enc(r)
      queued[#queued + 1] = id
    end
  end
  if #queued > 0 then
    call_many('HSET', KEYS[1], writes)
    call_many('RPUSH', KEYS[5], queued)
    wake()
  end
  return #queued
end

local function snapshot(id)
  return {redis.call('HGET', KEYS[1], id), redis.call('HGET', KEYS[2], id),
          redis.call('HGET', KEYS[3], id), redis.call('HGET', KEYS[4], id)}
end

