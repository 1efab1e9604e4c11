-- settings_init.lua: record a namespace's heartbeat settings unless some are
-- stored already (the first explicitly configured process wins), and return
-- what is stored now.
--
-- KEYS[1] = {allot:NS}:settings   HASH interval_ms, ttl_ms
-- ARGV[1] = interval in ms
-- ARGV[2] = ttl in ms
--
-- Reply: { interval_ms, ttl_ms } as stored after the call (strings).
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'interval_ms', ARGV[1], 'ttl_ms', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'interval_ms', 'ttl_ms')
