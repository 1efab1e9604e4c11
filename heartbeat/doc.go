// Package heartbeat tracks node liveness in Redis: a node beats, live nodes are
// listed, dead ones are reaped, and a closing node leaves. Liveness is judged by
// Redis server time, never by node clocks, and a beat is also a poll: its reply
// says whether the assignment moved or rebalancing work is waiting.
//
// A node ID belongs to one process at a time, told apart by a random session
// (NewSession) carried in every beat: while the ID is live, a beat from
// another session is refused (ErrNodeIDInUse) and writes nothing, and only
// the holding session may Leave. Two processes started with one ID therefore
// never share its groups; the second joins once the first leaves or expires.
package heartbeat
