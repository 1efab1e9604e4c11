-- catalog.lua: every group document of the namespace and the key health
-- index, read at one group revision (registry.Catalog). A process that
-- borrows keeps this copy fresh from the lend channel's events, each of
-- which carries the revision it moved to; it reads again only after a gap.
--
-- KEYS[1] :state     HASH (rev)
-- KEYS[2] :groups    SET group names
-- KEYS[3] :unhealthy HASH group -> "state\tcreated"
-- ARGV[1] group key prefix ("{allot:NS}:group:"; same hash slot as KEYS)
--
-- Reply: {rev, n, group, entry, ... (n pairs of :unhealthy), doc, doc, ...}
--   (documents of groups deleted meanwhile are skipped)
local out = {redis.call('HGET', KEYS[1], 'rev') or '0'}
local bad = redis.call('HGETALL', KEYS[3])
out[2] = tostring(#bad / 2)
for _, v in ipairs(bad) do out[#out + 1] = v end
for _, g in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local doc = redis.call('GET', ARGV[1] .. g)
  if doc then out[#out + 1] = doc end
end
return out
