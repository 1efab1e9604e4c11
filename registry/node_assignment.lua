-- node_assignment.lua: the epoch and the documents of one node's groups, read
-- at one instant. Groups whose document is gone are skipped.
--
-- KEYS[1] :state  HASH epoch
-- KEYS[2] :assign HASH node ID -> comma-joined groups
-- ARGV[1] node ID
-- ARGV[2] group key prefix ("{allot:NS}:group:"; same hash slot as KEYS)
--
-- Reply: {epoch, group JSON, ...}
local out = {redis.call('HGET', KEYS[1], 'epoch') or '0'}
local v = redis.call('HGET', KEYS[2], ARGV[1])
if v then
  for g in string.gmatch(v, '[^,]+') do
    local doc = redis.call('GET', ARGV[2] .. g)
    if doc then out[#out + 1] = doc end
  end
end
return out
