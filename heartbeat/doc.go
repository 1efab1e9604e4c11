// Package heartbeat tracks node liveness in Redis: a node beats, live nodes are
// listed, dead ones are reaped, and a closing node leaves. Liveness is judged by
// Redis server time, never by node clocks, and a beat is also a poll: its reply
// says whether the assignment moved or rebalancing work is waiting.
package heartbeat
