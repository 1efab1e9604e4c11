package main

// mutant is one deliberate bug: in File, the exact text Old (which must occur
// exactly once) becomes New. Run lists the tests expected to kill it: a
// `go test -run` pattern over Pkgs. Old is a short, distinctive piece of
// code rather than a line number, so the suite survives unrelated edits
// around it; when the code it names is rewritten, the runner fails loudly
// and the mutant must be updated with it.
type mutant struct {
	Name string
	Why  string // the safety rule the bug breaks
	File string // relative to the module root
	Old  string
	New  string
	Pkgs []string
	Run  string
}

// mutants is the suite `make mutants` runs. The first six are the bugs of
// issue 12; every one must be killed by the tests named in Run.
var mutants = []mutant{
	{
		Name: "gate-off",
		Why:  "a capped group is granted without waiting for its holder's release",
		File: "allocator/rebalancer.go",
		Old:  "if len(mayHold[p.group]) < maxNodes[p.group] {",
		New:  "if true {",
		Pkgs: []string{"./allocator/"},
		Run:  "TestGate",
	},
	{
		Name: "no-fencing",
		Why:  "commit.lua accepts a plan whose epoch has moved",
		File: "registry/commit.lua",
		Old:  "if epoch ~= tonumber(ARGV[1]) then",
		New:  "if false then",
		Pkgs: []string{"./registry/", "./allocator/"},
		Run:  "^(TestCommitFence|TestStalePlannerCannotOverwriteNewerPlan)$",
	},
	{
		Name: "early-release",
		Why:  "a dropped capped group is reported released before OnChange returned",
		File: "client/loop.go",
		Old:  "for _, g := range c.delivered {",
		New:  "for _, g := range []string(nil) {",
		Pkgs: []string{"./client/"},
		Run:  "^TestCappedReleaseWaitsForOnChange$",
	},
	{
		Name: "lease-drop-off",
		Why:  "a client keeps its capped groups after its lease lapsed",
		File: "client/loop.go",
		Old:  "c.leaseLapsed()",
		New:  "_ = 0 // lease ignored",
		Pkgs: []string{"./client/"},
		// With Redis down the failing beats apply the lapse too; a node
		// whose loop is stalled depends on the watcher alone.
		Run: "^(TestRedisOutage|TestLapsedLeaseClaimsNoCappedGroup)$",
	},
	{
		Name: "rejoin-trusts-old-read",
		Why:  "a node that joins or rejoins trusts a read made before that beat",
		File: "client/loop.go",
		Old:  "if reply.Joined {",
		New:  "if false {",
		Pkgs: []string{"./client/"},
		Run:  "^(TestLapsedReadNotTrustedAfterRejoin|TestReadBeforeJoinNotTrusted)$",
	},
	{
		Name: "renewal-withholds",
		Why:  "a renewed lease does not give back the capped groups the node still holds",
		File: "client/loop.go",
		Old:  "if !hadLease {",
		New:  "if _ = hadLease; false {",
		Pkgs: []string{"./client/"},
		Run:  "^TestRenewedLeaseRestoresCappedGroups$",
	},
	{
		Name: "lapse-claims-capped",
		Why:  "a node past its lease still reports its capped groups held (a returning zombie puts a second holder on record)",
		File: "client/loop.go",
		Old:  "c.voided[g] = true",
		New:  "_ = g",
		Pkgs: []string{"./client/"},
		Run:  "^(TestLapsedLeaseClaimsNoCappedGroup|TestBeatPastLeaseClaimsNoCappedGroup)$",
	},
	{
		Name: "beat-ignores-lapse",
		Why:  "a beat sent past the lease, before the lease watcher ran, still claims the capped groups",
		File: "client/loop.go",
		Old:  "\tc.lapseIfDueLocked()\n\theld := c.heldLocked()",
		New:  "\theld := c.heldLocked()",
		Pkgs: []string{"./client/"},
		Run:  "^TestBeatPastLeaseClaimsNoCappedGroup$",
	},
	{
		Name: "void-outlives-renewal",
		Why:  "a capped group given back by a renewed lease, then revoked, is reported released before OnChange delivered its drop",
		File: "client/loop.go",
		Old:  "delete(c.voided, g) // its own again",
		New:  "_ = g // its own again",
		Pkgs: []string{"./client/"},
		Run:  "^TestLapsedLeaseClaimsNoCappedGroup$",
	},
	{
		Name: "eager-reap",
		Why:  "heartbeat reaps a node at TTL/3",
		File: "heartbeat/reap.lua",
		Old:  "now - tonumber(ARGV[1])",
		New:  "now - tonumber(ARGV[1]) / 3",
		Pkgs: []string{"./heartbeat/"},
		Run:  "^TestNoReapBeforeTTL$",
	},
	{
		Name: "plan-cap-pinned",
		Why:  "Plan pins preferring nodes to a group past its max_nodes",
		File: "allocator/plan.go",
		Old:  "if !ok || counts[g] >= p.capOf(int(g)) {",
		New:  "if !ok {",
		Pkgs: []string{"./allocator/"},
		Run:  "^(TestPlanProperties|TestPlanMatchesReference)$",
	},
	{
		Name: "release-before-callback",
		Why:  "the dispatcher counts a change as delivered before calling OnChange",
		File: "client/dispatch.go",
		Old:  "\t\t\tfor _, fn := range listeners {\n\t\t\t\tc.call(fn, ch)\n\t\t\t}\n",
		New: "\t\t\tc.mu.Lock()\n\t\t\tc.delivered = ch.new.Names()\n\t\t\tc.mu.Unlock()\n\t\t\tsignal(c.wakeBeat)\n" +
			"\t\t\tfor _, fn := range listeners {\n\t\t\t\tc.call(fn, ch)\n\t\t\t}\n",
		Pkgs: []string{"./client/"},
		Run:  "^TestCappedReleaseWaitsForOnChange$",
	},
	{
		Name: "share-holders",
		Why:  "a node's share ignores how many nodes hold the group",
		File: "registry/node_assignment.lua",
		Old:  "out[#out + 1] = redis.call('HGET', KEYS[3], g) or '1'",
		New:  "out[#out + 1] = '1'",
		Pkgs: []string{"./client/"},
		Run:  "^TestShareIsTheFractionOfHolders$",
	},
	{
		Name: "history-uncapped",
		Why:  "a group's history grows past its limit",
		File: "registry/write.lua",
		Old:  "redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)",
		New:  "redis.call('LTRIM', KEYS[2], 0, -1)",
		Pkgs: []string{"./registry/"},
		Run:  "^TestBackends$/^standalone$/^HistoryCapAndRollback$",
	},
	{
		Name: "schedule-twice",
		Why:  "a due schedule item is applied by every planner that sees it",
		File: "registry/write.lua",
		Old:  "if claim ~= '' and redis.call('HEXISTS', KEYS[7], claim) == 0 then",
		New:  "if false then",
		Pkgs: []string{"./registry/"},
		Run:  "^TestBackends$/^standalone$/^ScheduleExactlyOnce$",
	},
	{
		Name: "export-unmasked",
		Why:  "the export printer shows secret values without --reveal",
		File: "registry/pool.go",
		Old:  "g = g.Masked()",
		New:  "_ = g.Masked()",
		Pkgs: []string{"./registry/"},
		Run:  "^TestExportPool$",
	},
	{
		Name: "ttl-short",
		Why:  "a TTL shorter than 3 beats is accepted (one lost beat reaps a node)",
		File: "heartbeat/config.go",
		Old:  "if c.TTL < minTTLBeats*c.Interval {",
		New:  "if c.TTL < c.Interval {",
		Pkgs: []string{"./heartbeat/"},
		Run:  "^TestConfigValidate$",
	},
	{
		Name: "zombie-writeback",
		Why:  "a commit writes an entry for a node reaped since the plan was read",
		File: "registry/commit.lua",
		Old:  "if not redis.call('ZSCORE', KEYS[7], id) then",
		New:  "if false then",
		Pkgs: []string{"./registry/"},
		Run:  "^TestBackends$/^standalone$/^Commit$",
	},
	{
		Name: "sessions-ignored",
		Why:  "a beat from another process with a live node's ID is accepted (two processes share an exclusive key)",
		File: "heartbeat/beat.lua",
		Old:  "if old and seen and not sameSession and tonumber(seen) >= now - ttl then",
		New:  "if false then",
		Pkgs: []string{"./heartbeat/"},
		Run:  "^TestSessionRefusesSecondProcess$",
	},
	{
		Name: "limiter-partial",
		Why:  "a call refused by one limit still takes from the others (not all or nothing)",
		File: "quota/limiter.lua",
		Old:  "if worst > 0 then return refuse(worst, wait) end\nif n > 0 then save(news) end",
		New:  "if n > 0 then save(news) end\nif worst > 0 then return refuse(worst, wait) end",
		Pkgs: []string{"./quota/"},
		Run:  "^TestLimiter$/^standalone$/^all_or_nothing$",
	},
	{
		Name: "cooldown-ignored",
		Why:  "a group's shared cooldown (a 429 reported by any holder) does not stop other holders' calls",
		File: "quota/limiter.lua",
		Old:  "if cool and cool * 1000 > now then",
		New:  "if false then",
		Pkgs: []string{"./quota/"},
		Run:  "^TestLimiter$/^standalone$/^cooling$",
	},
	{
		Name: "health-uncorroborated",
		Why:  "one node's failure reports suspend a group that other nodes hold too (issue 21: one node suspended the whole pool)",
		File: "registry/health.lua",
		Old:  "if holders >= 2 and #nodes < 2 then return 'uncorroborated' end",
		New:  "if false then return 'uncorroborated' end",
		Pkgs: []string{"./registry/"},
		Run:  "^TestHealthAbuse$/^standalone$/^(Corroboration|SuspendEverything)$",
	},
	{
		Name: "health-cooldown-uncapped",
		Why:  "one node's Retry-After cools a group longer than max_cooldown (issue 21: one report per group froze the pool for an hour)",
		File: "registry/health.lua",
		Old:  "if node == '' or ra <= maxCooldown then",
		New:  "if true then",
		Pkgs: []string{"./registry/"},
		Run:  "^TestHealthAbuse$/^standalone$/^FreezePool$",
	},
	{
		Name: "health-suspension-uncapped",
		Why:  "reports suspend more than max_suspended of the pool's groups",
		File: "registry/health.lua",
		Old:  "if redis.call('HEXISTS', KEYS[3], name) == 0 and redis.call('HLEN', KEYS[3]) >= allowed then",
		New:  "if false then",
		Pkgs: []string{"./registry/"},
		Run:  "^TestHealthAbuse$/^standalone$/^SuspensionCap$",
	},
	{
		Name: "rebalance-now-unguarded",
		Why:  "the plan a suspension asks for runs beside the plan in flight (at most one rebalance at a time per client; issue 22 item 2)",
		File: "client/health.go",
		Old:  "\tif !c.rebalancing.CompareAndSwap(false, true) {\n\t\treturn\n\t}\n\tc.workers.Add(1)\n\tgo func() {\n\t\tdefer c.workers.Done()\n\t\tc.releaseRebalancing()",
		New:  "\tc.workers.Add(1)\n\tgo func() {\n\t\tdefer c.workers.Done()\n\t\tc.rebalanceRetrying(c.ctx, why)\n\t\tc.forceFetch()",
		Pkgs: []string{"./client/"},
		Run:  "^TestRebalanceNowTakesTheGuard$",
	},
}
