-- schedule_cancel.lua: remove a pending scheduled change.
--
-- KEYS[1] :schedule       ZSET schedule ID -> due ms
-- KEYS[2] :schedule:items HASH schedule ID -> JSON
-- KEYS[3] :log            STREAM events
-- ARGV[1] schedule ID
-- ARGV[2] events channel
-- ARGV[3] by
-- ARGV[4] log MAXLEN
--
-- Reply: 1 cancelled | 0 not pending
local item = redis.call('HGET', KEYS[2], ARGV[1])
if not item then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
local ok, doc = pcall(cjson.decode, item)
local group = ''
if ok and type(doc) == 'table' and type(doc.group) == 'string' then group = doc.group end
emit(KEYS[3], ARGV[2], ARGV[4], 'schedule.cancelled', group, '', ARGV[3], 0, 0, now_ms())
return 1
