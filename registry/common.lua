-- common.lua: helpers prepended to every registry script (not a script itself).

-- now_ms is the Redis server time in Unix milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- num formats an integer-valued number without exponent.
local function num(n)
  return string.format('%.0f', n)
end

-- iso formats Unix ms as RFC 3339 UTC with milliseconds (what Go's time.Time
-- decodes), using the days-to-civil algorithm of H. Hinnant.
local function iso(ms)
  local s = math.floor(ms / 1000)
  local frac = ms - s * 1000
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local hh = math.floor(rem / 3600)
  rem = rem - hh * 3600
  local mi = math.floor(rem / 60)
  local ss = rem - mi * 60
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d, hh, mi, ss, frac)
end

-- stamp prepends string fields to a JSON object body ('{...}' with at least
-- one field). Values must not need escaping (timestamps only).
local function stamp(body, fields)
  local parts = {}
  for i = 1, #fields, 2 do
    parts[#parts + 1] = '"' .. fields[i] .. '":"' .. fields[i + 1] .. '"'
  end
  return '{' .. table.concat(parts, ',') .. ',' .. string.sub(body, 2)
end

-- publish sends an event's payload on the events channel, which every
-- watcher (server, CLI) follows, and on the narrower channel the nodes that
-- care follow instead (keys.Keys.AssignmentEvents, GroupEvents): assignment
-- events to every node, a group's events to its holders only, so a config
-- change wakes its holders and not the whole pool.
-- holders (optional) is the payload for the group's channel when it
-- differs: a write's event carries the new document there, for holders.
local function publish(channel, typ, group, payload, holders)
  redis.call('PUBLISH', channel, payload)
  if typ == 'assignment' then
    redis.call('PUBLISH', channel .. ':assignment', payload)
  elseif group ~= '' and string.sub(typ, 1, 6) == 'group.' then
    redis.call('PUBLISH', channel .. ':group:' .. group, holders or payload)
  end
end

-- group_rev records in :state (field "r:<group>") the group revision of a
-- group's last write, so a beat can tell a node whether a group it holds
-- changed since its read (heartbeat's beat.lua). A deleted group's field
-- goes: its holders read when the revision moves, and then drop it.
local function group_rev(state, group, rev)
  if rev then
    redis.call('HSET', state, 'r:' .. group, num(rev))
  else
    redis.call('HDEL', state, 'r:' .. group)
  end
end

-- emit appends one event to the log stream and publishes it with its ID.
-- rev (optional) is the group revision a group write moved to: a node that
-- does not hold the group and had read the revision before adopts it
-- without a read; an event with a rev also goes to the lend channel
-- (":lend"), which the group catalogs follow (registry.Catalog). doc (optional) is the group's new document: only the
-- copy on the group's channel carries it (its holders take it instead of
-- reading), never the events channel or the log, which watchers print.
local function emit(log, channel, maxlen, typ, group, node, by, epoch, version, at, rev, doc)
  local fields = {'type', typ, 'group', group, 'node', node, 'epoch', num(epoch),
    'version', num(version), 'by', by, 'at', num(at)}
  if rev then
    fields[#fields + 1] = 'rev'
    fields[#fields + 1] = num(rev)
  end
  local id = redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  local ev = {id = id, type = typ, group = group, node = node, epoch = epoch,
    version = version, by = by, at = at, rev = rev}
  local payload, holders = cjson.encode(ev), nil
  if doc then
    ev.doc = doc
    holders = cjson.encode(ev)
  end
  publish(channel, typ, group, payload, holders)
  if rev then
    -- Every revision goes to the catalogs too (keys.LendEvents), document
    -- included: a node that borrows must know every lendable group's config.
    redis.call('PUBLISH', channel .. ':lend', holders or payload)
  end
  return id
end
