-- rotate.lua: store texts whose secret values were sealed anew (allot
-- secrets rotate), each only if it is still exactly the text that was read:
-- a write in between wins, and its text waits for the next pass. Versions,
-- the group revision and events are left alone: the plain values are the
-- same, so nothing a reader holds changes.
--
-- KEYS[i]    the key of replacement i: a group document (STRING), a group's
--            history (LIST) or the schedule items (HASH)
-- ARGV[4i-3] kind: "string" | "list" | "hash"
-- ARGV[4i-2] the field of a HASH (the schedule ID); "" otherwise
-- ARGV[4i-1] the text read
-- ARGV[4i]   its replacement
--
-- Reply: one integer per replacement: 1 replaced, 0 left (the text stored
-- is no longer the one read).
local out = {}
local lists = {}

for i = 1, #KEYS do
  local key = KEYS[i]
  local kind, field, old, new = ARGV[4 * i - 3], ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i]
  local done = false
  if kind == 'string' then
    if redis.call('GET', key) == old then
      redis.call('SET', key, new)
      done = true
    end
  elseif kind == 'hash' then
    if redis.call('HGET', key, field) == old then
      redis.call('HSET', key, field, new)
      done = true
    end
  elseif kind == 'list' then
    -- A write in between shifts the entries: find the text, not an index.
    local entries = lists[key]
    if not entries then
      entries = redis.call('LRANGE', key, 0, -1)
      lists[key] = entries
    end
    for j = 1, #entries do
      if entries[j] == old then
        redis.call('LSET', key, j - 1, new)
        entries[j] = new
        done = true
        break
      end
    end
  else
    return redis.error_reply('rotate: unknown kind ' .. tostring(kind))
  end
  out[i] = done and 1 or 0
end
return out
