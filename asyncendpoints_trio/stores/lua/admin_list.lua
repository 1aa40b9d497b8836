-- A page of the admin list: jobs newest first, by status and name, from the admin indexes
-- (see _lib.lua). Read-only; per status asked, one ZRANGE BYLEX of at most limit + 1
-- members from the page's position: O(statuses x (log n + limit)), never a scan.
-- ARGV: limit, name ('' for any), after (the last page's 'created|id', '' for the first
-- page), then the statuses to read.
-- Reply: {more (1|0), {order key, snapshot...}, ...} newest first, at most `limit` jobs.
local limit, name, after = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local found = {}
for i = 4, #ARGV do
  local status = ARGV[i]
  local key, prefix, top = BY[status], '', '+'
  if name ~= '' then
    key = BY_NAME
    prefix = name .. '\0' .. CODE[status] .. '\0'
    top = '(' .. name .. '\0' .. CODE[status] .. '\1'  -- past every member of the prefix
  end
  if after ~= '' then top = '(' .. prefix .. after end
  local bottom = prefix == '' and '-' or '[' .. prefix
  local members = redis.call('ZRANGE', key, top, bottom, 'BYLEX', 'REV', 'LIMIT', 0,
                             limit + 1)
  for _, m in ipairs(members) do found[#found + 1] = string.sub(m, #prefix + 1) end
end
table.sort(found, function(a, b) return a > b end)
local reply = {#found > limit and 1 or 0}
for i = 1, math.min(limit, #found) do
  local key = found[i]
  local id = string.sub(key, 18)  -- after 'created|' (16 digits and the bar)
  reply[#reply + 1] = {key, unpack(snapshot(id))}
end
return reply
