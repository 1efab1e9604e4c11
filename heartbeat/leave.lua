-- leave.lua: deregister a node that is closing, so its groups move at once.
-- Leaving an unknown node changes nothing; a node whose record holds another
-- session is left alone (a stranger cannot remove a node) unless forced.
--
-- KEYS[1] :nodes     ZSET node ID -> last beat
-- KEYS[2] :state     HASH (mver is bumped if the node was live, and the
--                    plan for it claimed: the leaver plans, see claim)
-- KEYS[3] :members   HASH node ID -> record (session = 6th tab-separated field)
-- KEYS[4] :log:nodes STREAM of node events
-- KEYS[5..7] :assign, :revoked, :holders (see forget.lua)
-- ARGV[1] node ID
-- ARGV[2] events channel
-- ARGV[3] approximate MAXLEN of the node log stream
-- ARGV[4] session of the leaving process (never "": a node's record always
--         holds one, and "" must not match a record without)
-- ARGV[5] "1" = leave whatever the session (an operator's eviction)
--
-- Reply: 1 if the node was removed, 0 if it was unknown, -1 if it belongs to
-- another session (nothing changed). Or the error "INVALIDLEAVE <what>":
-- nothing changed.
if ARGV[1] == '' then
  return redis.error_reply('INVALIDLEAVE node id')
end
if ARGV[5] ~= '1' and ARGV[4] == '' then
  return redis.error_reply('INVALIDLEAVE empty session')
end
if ARGV[5] ~= '1' then
  local rec = redis.call('HGET', KEYS[3], ARGV[1])
  if rec then
    local _, _, session = string.find(rec, '^[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t[^\t]*\t([^\t]*)')
    if (session or '') ~= ARGV[4] then
      return -1
    end
  end
end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 0
end
redis.call('HDEL', KEYS[3], ARGV[1])
forget(ARGV[1])
local epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0') or 0
local mver = redis.call('HINCRBY', KEYS[2], 'mver', 1)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
claim(mver, now)
local xid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*',
  'type', 'node.left', 'group', '', 'node', ARGV[1], 'epoch', epoch,
  'version', 0, 'by', ARGV[1], 'at', string.format('%.0f', now))
redis.call('PUBLISH', ARGV[2], cjson.encode({
  id = xid, type = 'node.left', group = '', node = ARGV[1], epoch = epoch,
  version = 0, by = ARGV[1], at = now}))
return 1
