-- settings_init.lua: record a namespace's heartbeat settings unless some are
-- stored already (the first explicitly configured process wins), and return
-- what is stored now. Other settings in the hash (max_live_nodes) do not
-- count: only interval_ms and ttl_ms are the heartbeat's.
--
-- KEYS[1] = {allot:NS}:settings   HASH interval_ms, ttl_ms, ...
-- ARGV[1] = interval in ms
-- ARGV[2] = ttl in ms
--
-- Reply: { interval_ms, ttl_ms } as stored after the call (strings).
if redis.call('HEXISTS', KEYS[1], 'interval_ms') == 0 and redis.call('HEXISTS', KEYS[1], 'ttl_ms') == 0 then
  redis.call('HSET', KEYS[1], 'interval_ms', ARGV[1], 'ttl_ms', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'interval_ms', 'ttl_ms')
