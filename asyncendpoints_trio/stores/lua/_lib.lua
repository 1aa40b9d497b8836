-- Shared by every script (prepended at load time). All keys are declared, in this order,
-- and share one hash tag, so each script touches a single Cluster slot. They get names here,
-- and the scripts use only the names:
local REC = KEYS[1]        -- HASH  id -> job state record (see enc/dec below)
local DATA = KEYS[2]       -- HASH  id -> name \0 context JSON \0 payload JSON (written once)
local OUT = KEYS[3]        -- HASH  id -> result JSON
local ERR = KEYS[4]        -- HASH  id -> error JSON of the latest failure
local READY = KEYS[5]      -- ZSET  id -> place in line of a Queued job (lowest first)
local SCHEDULED = KEYS[6]  -- ZSET  id -> due time (ms) of a retry
local LEASES = KEYS[7]     -- ZSET  id -> lease deadline (ms) of an InProgress job
local EXPIRY = KEYS[8]     -- ZSET  id -> purge time (ms) of a terminal job (retention)
local IDEM = KEYS[9]       -- HASH  idempotency key -> id|fingerprint
local WAKE = KEYS[10]      -- LIST  at most one token: "there may be work", for BLPOP sleepers
local WATCH = KEYS[11]     -- ZSET  id -> until (ms): someone long-polls it; publish when it ends
local SEQ = KEYS[12]       -- STRING the last place in line handed out (INCRBY)
local HIST = KEYS[13]      -- HASH  id -> the latest attempts, one JSON object per line
local PROG = KEYS[14]      -- HASH  id -> the latest progress report (JSON)
local IDLE = KEYS[15]      -- HASH  owner -> expiry_ms|free|lease_ms: an idle instance that
                           -- blocks on its inbox and takes pushed jobs (see push dispatch)
-- The admin index (see "Admin indexes" below): each job has one member in it, from its
-- submit until its purge, and is counted in COUNTS under its status.
local BY_NAME = KEYS[16]   -- ZSET  'name \0 status code \0 created|id' (scores 0, BYLEX)
local COUNTS = KEYS[17]    -- HASH  status -> members of BY_NAME with that status
local AUDIT = KEYS[18]     -- HASH  id -> operators' retries and cancels, one JSON per line
local RATES = KEYS[19]     -- HASH  'minute:s|c|f' -> jobs submitted, completed, failed
-- KEYS[20], presence: the SET of instance ids, kept by plain commands (_redis_admin.py)
-- PUBLISH_CMD is set by the loader ahead of this library: 'PUBLISH', or on a Redis Cluster
-- 'SPUBLISH' (sharded pub/sub: a message stays in the shard of its channel's slot, which is
-- this partition's; every channel name below shares the keys' hash tag).
-- Changes of watched jobs (WATCH) are published here, as the job's id: event streams
-- follow them. A channel is no key; its name shares the keys' prefix.
local PREFIX = string.sub(REC, 1, #REC - 3)
local CHANGES = PREFIX .. 'changes'
-- Push dispatch: a job the submit leased straight to an idle instance waits in that
-- instance's inbox, a LIST named here (it shares the hash tag, so the slot, of the declared
-- keys: a script cannot know which instance's inbox it needs before it runs). One entry per
-- job; the job stays in its inbox until popped, and leaves it in every other way it can
-- stop being that instance's (a cancel, a release, a reclaim).
local function inbox(owner)
  return PREFIX .. 'inbox:' .. owner
end
-- Times come from this server's clock (TIME), never from the callers'.

local TERMINAL = {Completed = true, Failed = true, Canceled = true}

-- Deadlines and due times are in milliseconds; a job's timestamps keep microseconds, read
-- from the same TIME call (now_ms() sets STAMP).
local STAMP = 0

local function now_ms()
  local t = redis.call('TIME')
  STAMP = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as the records write it. Memoized for the script's run: a batch formats the
-- same few numbers (its time, tokens, retry counts) for every job, and each string.format
-- is a C sprintf.
local FORMATTED = {}

local function ms(n)
  local s = FORMATTED[n]
  if not s then
    s = string.format('%d', n)
    if n == n then FORMATTED[n] = s end  -- (a NaN cannot be a key)
  end
  return s
end

-- The record: status|token|retries|maxRetries|cancel|created|started|completed|updated|
-- owner|priority|due|version|name \0 idem. Times in microseconds ('' when unset); due is when a
-- Scheduled job becomes Queued; version grows with every change (touch, bump), the id of
-- the job's events. The last field is free text (a name or an idempotency key may hold
-- '|'): the job's name (kept here so that a script moving the job in the admin index needs
-- no other read; names hold no NUL), a NUL, and the idempotency key. A record written
-- before names were kept has no NUL there: its name is read from its data when needed.
local PATTERN = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|' ..
                '([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'

-- The 0.1 layout had no version (13 fields): such a record reads as version 0, and is
-- written back in today's layout by the next change. (The key stored last is a hex digest,
-- so the field count tells the layouts apart.)
local OLD_PATTERN = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|' ..
                    '([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'

local function dec(s)
  local st, tok, rt, mx, cn, cr, sa, co, up, ow, pr, du, ver, last = string.match(s, PATTERN)
  if st == nil then
    st, tok, rt, mx, cn, cr, sa, co, up, ow, pr, du, last = string.match(s, OLD_PATTERN)
    ver = '0'
  end
  local nm, idem = string.match(last, '^([^%z]*)%z(.*)$')
  if nm == nil then idem = last end
  return {st = st, tok = tonumber(tok), rt = tonumber(rt), mx = tonumber(mx), cn = cn,
          cr = cr, sa = sa, co = co, up = up, ow = ow, pr = tonumber(pr), du = du,
          ver = tonumber(ver), nm = nm, idem = idem}
end

-- One concatenation (one string made), no table.
local function enc(r)
  local last = r.idem
  if r.nm then last = r.nm .. '\0' .. last end
  return r.st .. '|' .. ms(r.tok) .. '|' .. ms(r.rt) .. '|' .. ms(r.mx) .. '|' .. r.cn .. '|' ..
         r.cr .. '|' .. r.sa .. '|' .. r.co .. '|' .. r.up .. '|' .. r.ow .. '|' .. ms(r.pr) ..
         '|' .. r.du .. '|' .. ms(r.ver) .. '|' .. last
end

-- A change of the job that keeps its lastUpdatedAt (a progress report).
local function bump(r)
  r.ver = r.ver + 1
end

-- A change of the job's state: lastUpdatedAt moves too.
local function touch(r)
  r.up = ms(STAMP)
  r.ver = r.ver + 1
end

-- A job's history: one line per attempt, the latest MAX_ATTEMPTS kept. `fields` is the JSON
-- inside the braces, without the times; the run's start and end are added here.
local MAX_ATTEMPTS = 10

local function attempt_line(r, label, fields)
  local line = '{"n":' .. (r.rt + 1) .. ',"o":"' .. label .. '","s":' ..
               (r.sa ~= '' and r.sa or 'null') .. ',"e":' .. ms(STAMP)
  if fields ~= '' then line = line .. ',' .. fields end
  return line .. '}'
end

local function with_line(history, line, keep)
  keep = keep or MAX_ATTEMPTS
  if not history or history == '' then return line end
  history = history .. '\n' .. line
  local count = select(2, string.gsub(history, '\n', '\n')) + 1
  while count > keep do
    history = string.sub(history, string.find(history, '\n', 1, true) + 1)
    count = count - 1
  end
  return history
end

local function get_record(id)
  local s = redis.call('HGET', REC, id)
  if not s then return nil end
  return dec(s)
end

-- Variadic commands in slices: Lua's unpack() has a stack limit, and one call per slice
-- instead of one per job is what keeps Redis' CPU per job low under load.
local SLICE = 4000

-- The sum of the replies (for ZADD and ZREM: how many members were added, removed).
local function call_many(command, key, items)
  local i, total = 1, 0
  while i <= #items do
    local j = math.min(i + SLICE - 1, #items)
    local reply = redis.call(command, key, unpack(items, i, j))
    if type(reply) == 'number' then total = total + reply end
    i = j + 1
  end
  return total
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

-- An inbox entry: length-prefixed frames ('<n>:<bytes>', '-' for none) of id, token,
-- record, data, error, progress (data holds NUL bytes, so no separator would do).
local function frame(v)
  if not v then return '-' end
  return #v .. ':' .. v
end

local function frames(e, count)
  local out, pos = {}, 1
  for i = 1, count do
    if string.sub(e, pos, pos) == '-' then
      out[i] = false
      pos = pos + 1
    else
      local len, start = string.match(e, '^(%d+):()', pos)
      len = tonumber(len)
      out[i] = string.sub(e, start, start + len - 1)
      pos = start + len
    end
  end
  return out
end

-- Take job `id`'s entry out of `owner`'s inbox; true if it was there (not popped yet).
local function unpush(owner, id)
  local box = inbox(owner)
  for _, e in ipairs(redis.call('LRANGE', box, 0, -1)) do
    if frames(e, 1)[1] == id then
      redis.call('LREM', box, 1, e)
      return true
    end
  end
  return false
end

-- Empty `owner`'s inbox; the ids of the jobs in it whose pushed lease still holds.
local function take_inbox(owner)
  local box = inbox(owner)
  local waiting = redis.call('LRANGE', box, 0, -1)
  local ids = {}
  if #waiting == 0 then return ids end
  redis.call('DEL', box)
  for _, e in ipairs(waiting) do
    local f = frames(e, 2)
    local s = redis.call('HGET', REC, f[1])
    local r = s and dec(s)
    if r and r.st == 'InProgress' and r.ow == owner and r.tok == tonumber(f[2]) then
      ids[#ids + 1] = f[1]
    end
  end
  return ids
end

-- The record's cancel field is 'P' while a pushed lease has not been started (acked by the
-- owner's first heartbeat, or taken by its claim's reconciliation): such a lease that
-- ends without an outcome goes back to the queue uncharged.
local PUSHED = 'P'

local function unstarted(r)
  r.st = 'Queued'
  r.ow = ''
  r.cn = '0'
  r.du = ms(STAMP)
  touch(r)
end

-- Forget registrations whose instance stopped refreshing them.
local function prune_idle(now)
  local regs = redis.call('HGETALL', IDLE)
  local live = {}
  for i = 1, #regs, 2 do
    local exp, free, lease = string.match(regs[i + 1], '^(%d+)|(%d+)|(%d+)$')
    if tonumber(exp) <= now then
      redis.call('HDEL', IDLE, regs[i])
    else
      live[#live + 1] = {regs[i], tonumber(exp), tonumber(free), tonumber(lease)}
    end
  end
  return live
end

local function wake()
  if redis.call('LLEN', WAKE) == 0 then redis.call('RPUSH', WAKE, '1') end
end

-- Tell event streams about changed jobs, for those someone watches (nobody else pays
-- more than one ZCARD).
local function notify(ids)
  if #ids == 0 or redis.call('ZCARD', WATCH) == 0 then return end
  local i = 1
  while i <= #ids do
    local j = math.min(i + SLICE - 1, #ids)
    local watched = redis.call('ZMSCORE', WATCH, unpack(ids, i, j))
    for k = 1, #watched do
      if watched[k] then redis.call(PUBLISH_CMD, CHANGES, ids[i + k - 1]) end
    end
    i = j + 1
  end
end

-- The ready queue is a sorted set rather than a list, so that taking a job out of the middle
-- (cancelling a queued job) is O(log n), not a scan of the line. A job joins at the back
-- with the next number of SEQ; a released or reclaimed one goes to the front, below the
-- lowest place taken. Claims pop the lowest places first (ZPOPMIN).
-- A priority p is a head start of p * PRIORITY_STEP places (see _job.py): a job overtakes
-- lower-priority jobs queued shortly before it, and none waits behind more than
-- 9 * PRIORITY_STEP later arrivals.
local PRIORITY_STEP = 1000

local function enqueue_back(ids, priorities, quiet)
  if #ids == 0 then return end
  local last = redis.call('INCRBY', SEQ, #ids)
  local entries = {}
  for i, id in ipairs(ids) do
    entries[#entries + 1] = last - #ids + i - PRIORITY_STEP * priorities[i]
    entries[#entries + 1] = id
  end
  call_many('ZADD', READY, entries)
  if not quiet then wake() end
end

local function enqueue_front(ids)
  if #ids == 0 then return end
  -- Before the lowest place taken, and before any place a job joining now could take.
  local lowest = tonumber(redis.call('GET', SEQ) or '0') + 1 - PRIORITY_STEP * 9
  local first = redis.call('ZRANGE', READY, 0, 0, 'WITHSCORES')
  if first[2] and tonumber(first[2]) < lowest then lowest = tonumber(first[2]) end
  local entries = {}
  for i, id in ipairs(ids) do
    entries[#entries + 1] = lowest - i
    entries[#entries + 1] = id
  end
  call_many('ZADD', READY, entries)
  wake()
end

-- A job reached Completed, Failed or Canceled: start its retention clock, tell long-pollers.
local function terminal(id, r, now, retention_ms, done_channel)
  r.co = ms(STAMP)
  redis.call('ZADD', EXPIRY, now + retention_ms, id)
  if redis.call('ZSCORE', WATCH, id) then
    redis.call('ZREM', WATCH, id)
    redis.call(PUBLISH_CMD, done_channel, frame(id))
  end
end

local function hmget(key, ids) return read_many('HMGET', key, ids) end

-- Admin indexes. One sorted set, BY_NAME, holds one member per job: 'name \0 code \0
-- created|id', its name, its status's code and its order key (created in microseconds,
-- zero-padded, so lexicographic order is (created, id) order). All scores are 0, as BYLEX
-- needs. The members of one name and status are one lexicographic range, read newest first
-- with ZRANGE ... BYLEX REV from a page's last member, exclusive: O(log n + page); a list
-- by status alone merges the ranges of every name (admin_list.lua). COUNTS holds the
-- members per status, kept from the replies of the ZADDs and ZREMs themselves, so it
-- counts what the set holds, whatever was there before.
-- A status change is one ZREM and one ZADD of the job's member. A script notes every
-- status change of a job (index_move) and applies them at its end in one ZREM per status
-- left and one ZADD per status entered (index_flush); a job that moves twice in one script
-- (promoted, then claimed) moves once.
local CODE = {Queued = 'Q', Scheduled = 'S', InProgress = 'I', Completed = 'C',
              Failed = 'F', Canceled = 'X'}
local SEP = {}  -- status -> '\0code\0', between a name and the order key
for status, code in pairs(CODE) do SEP[status] = '\0' .. code .. '\0' end

local function order_key(cr, id)
  if #cr == 16 then return cr .. '|' .. id end  -- every time from 2001 to 2286
  return string.rep('0', 16 - #cr) .. cr .. '|' .. id
end

-- A job's member: one concatenation (every string Lua makes is hashed and interned).
local function member(name, status, cr, id)
  if #cr == 16 then return name .. SEP[status] .. cr .. '|' .. id end
  return name .. SEP[status] .. order_key(cr, id)
end

-- The job's name, from its record; a record from before names were kept there learns it
-- from the job's data (the data's first field), and keeps it from its next write.
local function name_of(id, r)
  if not r.nm then
    local data = redis.call('HGET', DATA, id)
    r.nm = data and string.match(data, '^([^%z]*)') or ''
  end
  return r.nm
end

-- The moves noted so far, in parallel arrays (no table per job); AT: id -> its slot, so a
-- second move of a job updates its first. For the scripts that may move a job twice
-- (recover, promote, cancel, retry, unidle).
local MV_ID, MV_CR, MV_NAME, MV_FROM, MV_TO, AT = {}, {}, {}, {}, {}, {}
local MV_N = 0

-- `from`, `to`: statuses, or false for a job that is new (submit) or gone (purge).
local function index_move(id, cr, name, from, to)
  local at = AT[id]
  if at then
    MV_TO[at] = to or false
    return
  end
  at = MV_N + 1
  MV_N = at
  AT[id] = at
  MV_ID[at], MV_CR[at], MV_NAME[at], MV_FROM[at], MV_TO[at] = id, cr, name, from or false,
                                                               to or false
end

-- The hot paths' moves (submit, claim, finish): their members go straight into the flush's
-- arguments, per status, with no note per job: ENTER[status] the ZADD arguments ('0',
-- member, ...), LEAVE[status] the members to ZREM. index_flush adds before it removes, so
-- a job moved twice this way in one script (submitted, then pushed) ends with its last
-- member alone; a job must not come back this way to a status it left in the same script,
-- nor be noted by index_move after such a move (index_move's notes are applied first).
local ENTER, LEAVE = {}, {}

local function entering(status)
  local list = ENTER[status]
  if not list then list = {}; ENTER[status] = list end
  return list
end

local function leaving(status)
  local list = LEAVE[status]
  if not list then list = {}; LEAVE[status] = list end
  return list
end

-- One job from status `from` to status `to` (statuses, never false), on the hot path.
local function index_shift(id, cr, name, from, to)
  local out = LEAVE[from] or leaving(from)
  out[#out + 1] = member(name, from, cr, id)
  local into = ENTER[to] or entering(to)
  into[#into + 1] = '0'
  into[#into + 1] = member(name, to, cr, id)
end

local function index_flush()
  -- status -> members leaving it; -> ZADD arguments entering it (scores as strings: Lua
  -- would format a number for every one)
  local out, into, n_out, n_in = {}, {}, {}, {}
  for at = 1, MV_N do
    local from, to = MV_FROM[at], MV_TO[at]
    if from ~= to then
      local id, cr, name = MV_ID[at], MV_CR[at], MV_NAME[at]
      if from then
        local list, k = out[from], n_out[from]
        if not list then list, k = {}, 0; out[from] = list end
        list[k + 1] = member(name, from, cr, id)
        n_out[from] = k + 1
      end
      if to then
        local list, k = into[to], n_in[to]
        if not list then list, k = {}, 0; into[to] = list end
        list[k + 1] = '0'
        list[k + 2] = member(name, to, cr, id)
        n_in[to] = k + 2
      end
    end
  end
  -- status -> how its count changes: one HINCRBY per status whose count moved
  local delta = {}
  for status, members in pairs(out) do
    delta[status] = (delta[status] or 0) - call_many('ZREM', BY_NAME, members)
  end
  for status, entries in pairs(into) do
    delta[status] = (delta[status] or 0) + call_many('ZADD', BY_NAME, entries)
  end
  for status, entries in pairs(ENTER) do
    delta[status] = (delta[status] or 0) + call_many('ZADD', BY_NAME, entries)
  end
  for status, members in pairs(LEAVE) do
    delta[status] = (delta[status] or 0) - call_many('ZREM', BY_NAME, members)
  end
  for status, d in pairs(delta) do
    if d ~= 0 then redis.call('HINCRBY', COUNTS, status, d) end
  end
  MV_ID, MV_CR, MV_NAME, MV_FROM, MV_TO, AT = {}, {}, {}, {}, {}, {}
  MV_N = 0
  ENTER, LEAVE = {}, {}
end

-- Per-minute counts for the admin stats: kind s (submitted), c (completed), f (failed).
local function count_rate(now, kind, n)
  if n > 0 then
    redis.call('HINCRBY', RATES, ms(math.floor(now / 60000)) .. ':' .. kind, n)
  end
end

local AUDIT_KEPT = 20

-- An operator's action, in the job's audit. `by_json`: who, as JSON (a string or null).
local function audit(id, action, by_json)
  local line = '{"a":"' .. action .. '","b":' .. by_json .. ',"t":' .. ms(STAMP) .. '}'
  redis.call('HSET', AUDIT, id, with_line(redis.call('HGET', AUDIT, id), line, AUDIT_KEPT))
end

local function promote(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', now, 'LIMIT', 0, limit)
  if #ids == 0 then return 0 end
  call_many('ZREM', SCHEDULED, ids)
  local records = hmget(REC, ids)
  local writes, queued, priorities = {}, {}, {}
  for i, id in ipairs(ids) do
    local r = records[i] and dec(records[i])
    if r and r.st == 'Scheduled' then
      r.st = 'Queued'
      touch(r)
      index_move(id, r.cr, name_of(id, r), 'Scheduled', 'Queued')
      writes[#writes + 1] = id
      writes[#writes + 1] = enc(r)
      queued[#queued + 1] = id
      priorities[#priorities + 1] = r.pr
    end
  end
  if #queued > 0 then
    call_many('HSET', REC, writes)
    enqueue_back(queued, priorities)
    notify(queued)
  end
  return #queued
end

-- A job as get, watch, cancel and submit return it:
-- {record, data, result, error, history, progress, audit}.
local function snapshot(id)
  return {redis.call('HGET', REC, id), redis.call('HGET', DATA, id),
          redis.call('HGET', OUT, id), redis.call('HGET', ERR, id),
          redis.call('HGET', HIST, id), redis.call('HGET', PROG, id),
          redis.call('HGET', AUDIT, id)}
end

