-- node_assignment.lua: the epoch, and the documents and holder counts of one
-- node's groups, read at one instant. Groups whose document is gone are skipped.
--
-- KEYS[1] :state   HASH epoch, dirty, rev
-- KEYS[2] :assign  HASH node ID -> comma-joined groups
-- KEYS[3] :holders HASH group -> number of nodes assigned it
-- ARGV[1] node ID
-- ARGV[2] group key prefix ("{allot:NS}:group:"; same hash slot as KEYS)
--
-- Reply: {epoch, dirty ("1" when a leave or reap changed holder counts since
-- the last commit: the counts read are not the epoch's), rev (the group
-- revision the documents read are at), group JSON, holders, group JSON,
-- holders, ...}
local st = redis.call('HMGET', KEYS[1], 'epoch', 'dirty', 'rev')
local out = {st[1] or '0', st[2] and '1' or '0', st[3] or '0'}
local v = redis.call('HGET', KEYS[2], ARGV[1])
if v then
  for g in string.gmatch(v, '[^,]+') do
    local doc = redis.call('GET', ARGV[2] .. g)
    if doc then
      out[#out + 1] = doc
      out[#out + 1] = redis.call('HGET', KEYS[3], g) or '1'
    end
  end
end
return out
