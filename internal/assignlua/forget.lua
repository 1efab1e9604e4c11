-- forget.lua: a prelude of heartbeat's reap.lua and leave.lua (same KEYS
-- layout). It edits registry's committed assignment in registry's format
-- (see package doc of internal/assignlua): it lives here, not in heartbeat,
-- so the one copy sits next to its owner's documentation.
--
-- forget drops a gone node from the committed assignment at once, so a node
-- that comes back can never read its old groups from it, and keeps the holder
-- counts true. When it removes a committed entry it marks the assignment
-- dirty (:state dirty): the next commit then bumps the epoch even if no entry
-- differs, so the nodes still holding those groups learn their new share —
-- with the plan that replaces the node, not in a refetch storm of their own.
-- It also records which groups lost a holder (:state dirtyg, comma-joined;
-- "*" once the list passes 4 KiB) so that commit's event names them and only
-- their holders re-read.
--
-- KEYS[5] :assign  HASH node ID -> groups (the node's entry is removed)
-- KEYS[6] :revoked HASH node ID -> revoked entries (likewise)
-- KEYS[7] :holders HASH group -> holder count (decremented)
local function forget(id)
  redis.call('HDEL', KEYS[6], id)
  local v = redis.call('HGET', KEYS[5], id)
  if not v then
    return false
  end
  for g in string.gmatch(v, '[^,]+') do
    if redis.call('HINCRBY', KEYS[7], g, -1) <= 0 then redis.call('HDEL', KEYS[7], g) end
  end
  redis.call('HDEL', KEYS[5], id)
  local dg = v
  if v ~= '' then
    local prev = redis.call('HGET', KEYS[2], 'dirtyg')
    if prev == '*' or (prev and #prev + #v > 4096) then
      dg = '*'
    elseif prev and prev ~= '' then
      dg = prev .. ',' .. v
    end
    redis.call('HSET', KEYS[2], 'dirty', 1, 'dirtyg', dg)
  else
    redis.call('HSET', KEYS[2], 'dirty', 1)
  end
  return true
end
