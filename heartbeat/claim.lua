-- claim.lua: a prelude of reap.lua and leave.lua (heartbeat's own; the
-- work-claim fields wsig and wat of :state belong to heartbeat: beat.lua
-- sets and reads them).
--
-- KEYS[2] :state HASH (rev read; wsig, wat written)
--
-- claim marks the plan for membership version mver as taken by the caller
-- (who plans next: the leaver, or the planner that reaped), so that the
-- beats that see the new mver do not all try the lock (beat.lua's wsig).
local function claim(mver, now)
  local rev = redis.call('HGET', KEYS[2], 'rev') or '0'
  redis.call('HSET', KEYS[2], 'wsig', 'm' .. mver .. ':' .. rev, 'wat', string.format('%.0f', now))
end
