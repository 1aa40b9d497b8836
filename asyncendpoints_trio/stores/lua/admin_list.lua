-- A page of the admin list: jobs newest first, by status and name, from the admin index
-- (see _lib.lua). Read-only. Each (name, status) asked is one range of the index, read
-- newest first from the page's position; the ranges are merged lazily (a heap on their
-- newest unread members), each read in chunks that start small and double, so a page reads
-- O(ranges + limit) members in O(ranges + log limit x ranges) range reads of O(log n)
-- each, never a scan. A name given: one range per status asked (at most six). No name: the
-- names are found by skipping from one name's members to the next (O(names x log n)), and
-- every name's ranges are merged.
-- ARGV: limit, name ('' for any), after (the last page's 'created|id', '' for the first
-- page), then the statuses to read.
-- Reply: {more (1|0), {order key, snapshot...}, ...} newest first, at most `limit` jobs.
local limit, name, after = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local want = limit + 1
local names = {name}
if name == '' then
  names = {}
  local from = '-'
  while true do
    local first = redis.call('ZRANGE', BY_NAME, from, '+', 'BYLEX', 'LIMIT', 0, 1)[1]
    if not first then break end
    local found = string.match(first, '^([^%z]*)')
    names[#names + 1] = found
    from = '[' .. found .. '\1'  -- the first member of the next name
  end
end
-- A range: its members' prefix, the exclusive upper bound of what is unread, the lower
-- bound, the chunk read last, where we are in it, its size, whether the range is done.
local ranges = {}
for _, n in ipairs(names) do
  for i = 4, #ARGV do
    local code = CODE[ARGV[i]]
    local prefix = n .. '\0' .. code .. '\0'
    local top = '(' .. n .. '\0' .. code .. '\1'  -- past every member of the prefix
    if after ~= '' then top = '(' .. prefix .. after end
    ranges[#ranges + 1] = {prefix = prefix, top = top, bottom = '[' .. prefix, size = 0}
  end
end
local first_chunk = math.min(want, math.max(4, math.ceil(want / math.max(1, #ranges)) + 1))

-- Read the range's next chunk; false when it has no more members.
local function fill(g, count)
  if g.done then return false end
  local got = redis.call('ZRANGE', BY_NAME, g.top, g.bottom, 'BYLEX', 'REV', 'LIMIT', 0,
                         count)
  g.chunk, g.at, g.size = got, 1, count
  g.done = #got < count
  if #got == 0 then return false end
  g.top = '(' .. got[#got]
  g.key = string.sub(got[1], #g.prefix + 1)
  return true
end

-- A max-heap of ranges by their newest unread member's order key.
local heap = {}
local function sift_down(i)
  local n = #heap
  while true do
    local l, r, top = 2 * i, 2 * i + 1, i
    if l <= n and heap[l].key > heap[top].key then top = l end
    if r <= n and heap[r].key > heap[top].key then top = r end
    if top == i then return end
    heap[i], heap[top] = heap[top], heap[i]
    i = top
  end
end
for _, g in ipairs(ranges) do
  if fill(g, first_chunk) then heap[#heap + 1] = g end
end
for i = math.floor(#heap / 2), 1, -1 do sift_down(i) end

local keys = {}
while #keys < want and #heap > 0 do
  local g = heap[1]
  keys[#keys + 1] = g.key
  g.at = g.at + 1
  local more = true
  if g.at <= #g.chunk then
    g.key = string.sub(g.chunk[g.at], #g.prefix + 1)
  else
    more = fill(g, math.min(want, 2 * g.size))
  end
  if not more then
    heap[1] = heap[#heap]
    heap[#heap] = nil
  end
  if #heap > 0 then sift_down(1) end
end
local reply = {#keys > limit and 1 or 0}
for i = 1, math.min(limit, #keys) do
  local key = keys[i]
  local id = string.sub(key, 18)  -- after 'created|' (16 digits and the bar)
  reply[#reply + 1] = {key, unpack(snapshot(id))}
end
return reply
