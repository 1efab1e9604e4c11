-- schedule_add.lua: store a scheduled change if its group still exists.
--
-- KEYS[1] :schedule       ZSET schedule ID -> due ms
-- KEYS[2] :schedule:items HASH schedule ID -> JSON
-- KEYS[3] :log            STREAM events
-- KEYS[4] :group:<name>   STRING group JSON (must exist)
-- ARGV[1] schedule ID
-- ARGV[2] due time, Unix ms
-- ARGV[3] item JSON without created
-- ARGV[4] events channel
-- ARGV[5] group name
-- ARGV[6] by
-- ARGV[7] log MAXLEN
--
-- Reply: {"ok", stored JSON} | {"missing"} | {"exists"} (ID taken)
if redis.call('EXISTS', KEYS[4]) == 0 then return {'missing'} end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'exists'} end
local now = now_ms()
local item = stamp(ARGV[3], {'created', iso(now)})
redis.call('HSET', KEYS[2], ARGV[1], item)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
emit(KEYS[3], ARGV[4], ARGV[7], 'schedule.added', ARGV[5], '', ARGV[6], 0, 0, now)
return {'ok', item}
