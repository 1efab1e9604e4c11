-- reap.lua: remove every node silent for longer than the TTL.
--
-- KEYS[1] :nodes ZSET node ID -> last beat (ms, server time)
-- KEYS[2] :state HASH (mver is bumped once if any node was reaped, and the
--                plan for it claimed: the reaper plans, see claim)
-- KEYS[3] :log:nodes STREAM of node events
-- KEYS[4] :members HASH node ID -> record
-- KEYS[5] :assign  HASH node ID -> groups (the node's entry is removed)
-- KEYS[6] :revoked HASH node ID -> revoked entries (likewise)
-- KEYS[7] :holders HASH group -> holder count (decremented)
-- KEYS[8] :settings HASH ttl_ms: the stored TTL wins over ARGV[1]
-- ARGV[1] TTL in ms, used when :settings stores none
-- ARGV[2] events channel
-- ARGV[3] approximate MAXLEN of the node log stream
--
-- Reply: the reaped node IDs (one node.reaped event each in the log; the
-- last one alone is published).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowStr = string.format('%.0f', now)
-- A reaper started with a shorter TTL than the namespace's must not reap
-- nodes that are live by the namespace's.
local ttl = tonumber(redis.call('HGET', KEYS[8], 'ttl_ms') or '')
if not ttl or ttl <= 0 then
  ttl = tonumber(ARGV[1])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now - ttl))
if #dead == 0 then
  return dead
end
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[4], id)
  forget(id)
end
local epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0') or 0
-- Every reaped node is logged; only the last is published: a pub/sub
-- message is a nudge that reaches every subscriber (every node), so a
-- thousand crashed nodes published one by one would cost a thousand times
-- the fleet in deliveries inside this script.
local xid
for _, id in ipairs(dead) do
  xid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
    'type', 'node.reaped', 'group', '', 'node', id, 'epoch', epoch,
    'version', 0, 'by', '', 'at', nowStr)
end
redis.call('PUBLISH', ARGV[2], cjson.encode({
  id = xid, type = 'node.reaped', group = '', node = dead[#dead], epoch = epoch,
  version = 0, by = '', at = now}))
claim(redis.call('HINCRBY', KEYS[2], 'mver', 1), now)
return dead
