-- assignment.lua: read the counters, the assignment and the revocations at
-- one instant.
--
-- KEYS[1] :state   HASH epoch, rev, mver, prev, pmver
-- KEYS[2] :assign  HASH node ID -> comma-joined groups
-- KEYS[3] :revoked HASH node ID -> comma-joined groups
--
-- Reply: {{epoch, rev, mver, prev, pmver}, {node, groups, ...}, {node, groups, ...}}
local st = redis.call('HMGET', KEYS[1], 'epoch', 'rev', 'mver', 'prev', 'pmver')
for i = 1, 5 do st[i] = st[i] or '0' end
return {st, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
