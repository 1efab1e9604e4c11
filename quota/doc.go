// Package quota is the rate limiter of a group's limits: the text form of a
// key's limits ("600/m, 90000 tokens/m, 10000/d"), one Lua script that
// applies every limit of a group at once (GCRA on Redis server time, all or
// nothing) and counts the group's usage per minute in the same round trip,
// and the in-process limiter used when Redis cannot be reached.
//
// It imports nothing else of allot: callers pass the Redis key names (built
// by allot's internal/keys) in Keys.
//
// Extension point for key health: the limiter script reads the field
// cooling_until (Unix ms, Redis server time) of the group's health hash
// (Keys.Health) and refuses every call until then, reporting Limit index
// Cooling. Whoever records upstream throttling only has to write that field.
package quota
