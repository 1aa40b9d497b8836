-- Counts for the admin stats, read-only: jobs per status (COUNTS), per name and status
-- (ZLEXCOUNT over each name's and status's range of the index; the names are found by
-- skipping from one name's members to the next, O(names x log n)), and the rate buckets.
-- ARGV: the most names to report.
-- Reply: {now_ms, {status, n, ...}, {name, {status, n, ...}, ...}, {field, n, ...}}.
local now = now_ms()
local most = tonumber(ARGV[1])
local statuses = {'Queued', 'Scheduled', 'InProgress', 'Completed', 'Failed', 'Canceled'}
local by_status = {}
local counts = redis.call('HMGET', COUNTS, unpack(statuses))
for i, status in ipairs(statuses) do
  by_status[#by_status + 1] = status
  by_status[#by_status + 1] = tonumber(counts[i] or '0')
end
local by_name = {}
local from = '-'
for _ = 1, most do
  local first = redis.call('ZRANGE', BY_NAME, from, '+', 'BYLEX', 'LIMIT', 0, 1)[1]
  if not first then break end
  local name = string.match(first, '^([^%z]*)')
  local per = {}
  for _, status in ipairs(statuses) do
    per[#per + 1] = status
    per[#per + 1] = redis.call('ZLEXCOUNT', BY_NAME, '[' .. name .. SEP[status],
                               '(' .. name .. '\0' .. CODE[status] .. '\1')
  end
  by_name[#by_name + 1] = name
  by_name[#by_name + 1] = per
  from = '[' .. name .. '\1'  -- the first member of the next name
end
return {now, by_status, by_name, redis.call('HGETALL', RATES)}
