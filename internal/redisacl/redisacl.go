// Package redisacl states the least Redis rights allot's parts need, as
// `ACL SETUSER` rules, and checks which rights a connection has beyond them.
//
// A Go node needs its namespace's keys and channels and the commands the
// client, heartbeat, registry, allocator and quota packages send (their Lua
// scripts included: Redis checks every command a script calls against the
// caller's rights). serve and the CLI need the same commands on every
// namespace's keys, plus SCAN (namespace list), UNLINK (check perf's
// clean-up) and LSET (secrets rotate). Nothing of allot needs a command of @dangerous or @admin, a key
// outside `{allot:…}`, or a channel outside it.
package redisacl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/internal/keys"
)

// NodeCommands are the commands a Go node sends, its scripts' included, in
// ACL syntax (container|subcommand). The ACL test runs a node under exactly
// these, so a command added to the code without being added here fails it.
var NodeCommands = []string{
	// connection and Cluster topology (acl|whoami lets `allot check redis`
	// name the user)
	"auth", "hello", "ping", "client|setname", "acl|whoami", "cluster|slots", "cluster|shards", "readonly",
	// scripts and transactions
	"eval", "evalsha", "script|load", "multi", "exec", "discard", "time",
	// strings and keys
	"get", "mget", "set", "del", "exists", "type", "ttl", "pttl", "expire", "pexpire",
	// hashes
	"hget", "hmget", "hgetall", "hkeys", "hlen", "hset", "hdel", "hexists", "hincrby",
	// sets, sorted sets, lists (group history)
	"sadd", "srem", "scard", "smembers", "smismember",
	"zadd", "zrem", "zscore", "zcard", "zcount", "zrange", "zrangebyscore",
	"lpush", "ltrim", "lrange",
	// streams (the event log) and pub/sub
	"xadd", "xlen", "xrange", "xrevrange", "xread",
	"publish", "pubsub|numsub", "subscribe", "unsubscribe", "ssubscribe", "sunsubscribe",
}

// ServeExtraCommands are what serve and the CLI send beyond a node's
// (lset: `allot secrets rotate` rewrites kept versions in place).
var ServeExtraCommands = []string{"scan", "unlink", "lset"}

// NodeRule is the ACL SETUSER rule of a node of namespace ns: its keys and
// channels only (`~{allot:ns}:*`, `&{allot:ns}:*`), NodeCommands only. The
// password part (`>secret`) is the caller's to add.
func NodeRule(ns string) string {
	prefix := keys.New(ns).Prefix()
	return rule([]string{"~" + prefix + ":*", "&" + prefix + ":*"}, NodeCommands)
}

// ServeRule is the rule of serve and the CLI: every namespace's keys and
// channels, NodeCommands and ServeExtraCommands.
func ServeRule() string {
	return rule([]string{"~{allot:*}:*", "&{allot:*}:*"}, append(slices.Clone(NodeCommands), ServeExtraCommands...))
}

func rule(patterns, commands []string) string {
	parts := append([]string{"on", "resetkeys", "resetchannels"}, patterns...)
	parts = append(parts, "-@all")
	for _, c := range commands {
		parts = append(parts, "+"+c)
	}
	return strings.Join(parts, " ")
}

// Right is one right a connection was probed for.
type Right struct {
	// Name says what the right is: a command ("flushall"), a key or a
	// channel outside the namespace.
	Name string `json:"name"`
	// Allowed is what Redis answered.
	Allowed bool `json:"allowed"`
	// NodeNeeds is true for the rights a node needs: refused, the node
	// cannot work; every other right allowed is more than a node needs.
	NodeNeeds bool `json:"node_needs"`
}

// Report is what Probe found.
type Report struct {
	User   string // ACL WHOAMI, or "" when even that is refused
	Rights []Right
}

// Beyond are the rights allowed that a node does not need.
func (r Report) Beyond() []Right {
	var out []Right
	for _, x := range r.Rights {
		if x.Allowed && !x.NodeNeeds {
			out = append(out, x)
		}
	}
	return out
}

// Missing are the rights a node needs that are refused.
func (r Report) Missing() []Right {
	var out []Right
	for _, x := range r.Rights {
		if !x.Allowed && x.NodeNeeds {
			out = append(out, x)
		}
	}
	return out
}

// probe is one command sent inside MULTI to learn whether it is allowed.
type probe struct {
	name      string
	args      []any
	nodeNeeds bool
}

// probes are the rights checked: a node's own (a few keyed commands on its
// namespace, its channel), then what lies beyond (keys and channels outside
// the namespace, commands of @dangerous, @admin and @keyspace a node never
// sends). Commands that cannot be queued in MULTI (MONITOR, SUBSCRIBE,
// SHUTDOWN...) are not probed.
func probes(ns string) []probe {
	k := keys.New(ns)
	own := k.Prefix() + ":acl-probe"
	other := "{allot:" + ns + "-other}:acl-probe"
	return []probe{
		{"get " + own, []any{"get", own}, true},
		{"hset " + own, []any{"hset", own, "f", "v"}, true},
		{"evalsha on " + own, []any{"evalsha", strings.Repeat("0", 40), 1, own}, true},
		{"publish " + k.Events(), []any{"publish", k.Events(), "probe"}, true},
		{"time", []any{"time"}, true},
		{"get a key outside allot (acl-probe)", []any{"get", "acl-probe"}, false},
		{"set a key outside allot (acl-probe)", []any{"set", "acl-probe", "x"}, false},
		{"get another namespace's key " + other, []any{"get", other}, false},
		{"publish outside the namespace (acl-probe)", []any{"publish", "acl-probe", "x"}, false},
		{"scan (every key name)", []any{"scan", 0}, false},
		{"keys", []any{"keys", "acl-probe"}, false},
		{"flushall", []any{"flushall"}, false},
		{"flushdb", []any{"flushdb"}, false},
		{"config get", []any{"config", "get", "maxmemory"}, false},
		{"config set", []any{"config", "set", "maxmemory", "0"}, false},
		{"acl setuser", []any{"acl", "setuser", "acl-probe"}, false},
		{"client kill", []any{"client", "kill", "id", 0}, false},
		{"script flush", []any{"script", "flush"}, false},
		{"function flush", []any{"function", "flush"}, false},
		{"info", []any{"info"}, false},
		{"unlink " + own, []any{"unlink", own}, false},
	}
}

// Probe checks each right by sending it inside MULTI and discarding the
// transaction: Redis checks the ACL when it queues a command, so nothing
// probed ever runs. On Cluster it probes one master (ACL users are per
// node; a MOVED answer is given after the ACL check, so it means allowed).
func Probe(ctx context.Context, rdb redis.UniversalClient, ns string) (Report, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var (
			rep   Report
			first = true
			err   error
		)
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if !first {
				return nil
			}
			first = false
			rep, err = probeOne(ctx, m, ns)
			return err
		})
		return rep, err
	}
	c, ok := rdb.(*redis.Client)
	if !ok {
		return Report{}, errors.New("redisacl: probe needs a standalone, Sentinel or Cluster client")
	}
	return probeOne(ctx, c, ns)
}

func probeOne(ctx context.Context, c *redis.Client, ns string) (Report, error) {
	conn := c.Conn()
	defer conn.Close()
	var rep Report
	if who, err := conn.Do(ctx, "acl", "whoami").Text(); err == nil {
		rep.User = who
	}
	for _, p := range probes(ns) {
		if err := conn.Do(ctx, "multi").Err(); err != nil {
			return rep, fmt.Errorf("redisacl: multi: %w", err)
		}
		err := conn.Do(ctx, p.args...).Err()
		if derr := conn.Do(ctx, "discard").Err(); derr != nil {
			return rep, fmt.Errorf("redisacl: discard: %w", derr)
		}
		allowed, err := queued(err)
		if err != nil {
			return rep, fmt.Errorf("redisacl: probe %s: %w", p.name, err)
		}
		rep.Rights = append(rep.Rights, Right{Name: p.name, Allowed: allowed, NodeNeeds: p.nodeNeeds})
	}
	return rep, nil
}

// queued reads the answer to a command sent inside MULTI: QUEUED (or a
// redirection, given after the ACL check) is allowed, NOPERM refused.
func queued(err error) (bool, error) {
	if err == nil {
		return true, nil
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "NOPERM"):
		return false, nil
	case strings.HasPrefix(msg, "MOVED"), strings.HasPrefix(msg, "ASK"):
		return true, nil
	}
	return false, err
}
