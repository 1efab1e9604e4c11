-- forget.lua: a prelude of reap.lua and leave.lua (same KEYS layout).
--
-- forget drops a gone node from the committed assignment at once, so a node
-- that comes back can never read its old groups from it, and keeps the holder
-- counts true. The stored digest is cleared so the next commit rewrites.
--
-- KEYS[2] :state   HASH (adigest cleared)
-- KEYS[5] :assign  HASH node ID -> groups (the node's entry is removed)
-- KEYS[6] :revoked HASH node ID -> revoked entries (likewise)
-- KEYS[7] :holders HASH group -> holder count (decremented)
local function forget(id)
  local v = redis.call('HGET', KEYS[5], id)
  if v then
    for g in string.gmatch(v, '[^,]+') do redis.call('HINCRBY', KEYS[7], g, -1) end
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[2], 'adigest')
  end
  if redis.call('HDEL', KEYS[6], id) == 1 then
    redis.call('HDEL', KEYS[2], 'adigest')
  end
end

