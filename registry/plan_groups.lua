-- plan_groups.lua: every group document, unless the caller already has
-- those of the current revision (a planner's cache: most plans follow a
-- membership change, not a group write).
--
-- KEYS[1] :state  HASH rev
-- KEYS[2] :groups SET group names
-- ARGV[1] the revision the caller has the documents of ("" = none)
-- ARGV[2] the group key prefix (keys.Keys.Group(""))
--
-- Reply: {rev} when ARGV[1] is the current revision, else {rev, doc, ...}
-- (any order; a name without a document is skipped).
local rev = redis.call('HGET', KEYS[1], 'rev') or '0'
if rev == ARGV[1] then
  return {rev}
end
local names = redis.call('SMEMBERS', KEYS[2])
local out = {rev}
local chunk = 1000
for s = 1, #names, chunk do
  local ks = {}
  for j = s, math.min(s + chunk - 1, #names) do
    ks[#ks + 1] = ARGV[2] .. names[j]
  end
  for _, doc in ipairs(redis.call('MGET', unpack(ks))) do
    if doc then
      out[#out + 1] = doc
    end
  end
end
return out
