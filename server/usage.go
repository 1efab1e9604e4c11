package server

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/allot-io/allot/quota"
	"github.com/allot-io/allot/registry"
)

// groupUsage answers GET /v1/groups/{name}/usage?since=1h: the group's use
// per minute, [{minute, requests, tokens, rejected, throttled, failures}],
// oldest first, minutes without use left out.
func (s *Server) groupUsage(w http.ResponseWriter, r *http.Request) error {
	since, err := usageSince(r, 0)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, err := s.reg.Get(r.Context(), name); err != nil {
		return err
	}
	u, err := s.reg.Usage(r.Context(), name, since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// usageSince reads ?since= (default 1h, above least, at most 24h).
func usageSince(r *http.Request, least time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get("since")
	if v == "" {
		return time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d < least || d > registry.MaxUsageWindow {
		low := "above 0"
		if least > 0 {
			low = "from " + windowText(least)
		}
		return 0, errInvalid("invalid since %q: want a duration %s, at most 24h (e.g. 15m, 1h)", v, low)
	}
	return d, nil
}

// PoolUsage is the answer of GET /v1/usage: every group's use in one
// answer, for the web UI's refresh. Minutes are columns (one array per
// count, one entry per minute from From to Now) rather than objects: a
// pool of 100 groups over an hour is 6,000 minutes, and the columns are a
// fraction of the bytes.
type PoolUsage struct {
	// From and Now are the first and the current minute of every column.
	From time.Time `json:"from"`
	Now  time.Time `json:"now"`
	// Minutes is the length of every column.
	Minutes int `json:"minutes"`
	// Groups holds every group that is not retired, by name.
	Groups map[string]GroupUsage `json:"groups"`
	// Pool is the pool's use in the last full minute against the
	// capacity of its active groups.
	Pool PoolMinute `json:"pool"`
}

// GroupUsage is one group in a PoolUsage.
type GroupUsage struct {
	// Columns holds one array per count of quota.Minute (requests,
	// tokens, rejected, throttled, failures, and any count added there
	// later), named as in the per-minute JSON; a count that is zero
	// over the whole span is left out.
	Columns map[string][]int64 `json:"columns"`
	// Limits reads every limit over its window (quota.Limits.Read).
	Limits []LimitUse `json:"limits"`
	// Used is the highest Ratio of Limits (status's `used`).
	Used float64 `json:"used"`
}

// LimitUse is one limit's reading: used of of over window, e.g. 6 of
// 10000 over 24h ("used today 6 / 10000"), or 300 of 600 over the last
// full minute.
type LimitUse struct {
	Limit  string  `json:"limit"`
	Kind   string  `json:"kind"`
	Window string  `json:"window"`
	Used   int64   `json:"used"`
	Of     float64 `json:"of"`
	Ratio  float64 `json:"ratio"`
}

// PoolMinute is the pool's last full minute: every count summed over its
// groups (Counts, named as Columns), and the requests and tokens against
// the sum of each active group's tightest limit of that kind per minute
// (quota.Limits.PerMinuteOf; groups without such a limit count neither
// their use nor a capacity).
type PoolMinute struct {
	Counts   map[string]int64 `json:"counts"`
	Requests Capacity         `json:"requests"`
	Tokens   Capacity         `json:"tokens"`
}

// Capacity is a use against what the limits allow in the same minute.
type Capacity struct {
	Used int64   `json:"used"`
	Of   float64 `json:"of"`
}

// poolUsage answers GET /v1/usage?since=1h (1m to 24h, whole minutes).
func (s *Server) poolUsage(w http.ResponseWriter, r *http.Request) error {
	since, err := usageSince(r, time.Minute)
	if err != nil {
		return err
	}
	all, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	unhealthy, err := s.reg.Unhealthy(r.Context())
	if err != nil {
		return err
	}
	all = registry.ApplyHealth(all, unhealthy)
	groups := make([]registry.Group, 0, len(all))
	for _, g := range all {
		if g.State != registry.Retired {
			groups = append(groups, g)
		}
	}
	use, err := s.usage.Read(r.Context(), groups, since)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, buildPoolUsage(groups, use))
	return nil
}

// buildPoolUsage turns a registry.PoolUse into the JSON of GET /v1/usage.
func buildPoolUsage(groups []registry.Group, use registry.PoolUse) PoolUsage {
	out := PoolUsage{From: use.From, Now: use.Now, Groups: make(map[string]GroupUsage, len(groups)),
		Pool: PoolMinute{Counts: map[string]int64{}}}
	for _, g := range groups {
		gu, ok := use.Groups[g.Name]
		if !ok {
			continue
		}
		out.Minutes = len(gu.Minutes)
		entry := GroupUsage{Columns: columns(gu.Minutes), Limits: []LimitUse{}}
		for _, u := range g.Limits.Read(gu.Totals) {
			entry.Limits = append(entry.Limits, LimitUse{Limit: u.Limit.String(), Kind: string(u.Limit.Kind),
				Window: windowText(u.Window), Used: u.Used, Of: u.Of, Ratio: u.Ratio})
			entry.Used = max(entry.Used, u.Ratio)
		}
		out.Groups[g.Name] = entry
		for name, v := range counts(gu.Totals.LastMinute) {
			out.Pool.Counts[name] += v
		}
		if g.State != registry.Active {
			continue
		}
		if of := g.Limits.PerMinuteOf(quota.Requests); of > 0 {
			out.Pool.Requests.Used += gu.Totals.LastMinute.Requests
			out.Pool.Requests.Of += of
		}
		if of := g.Limits.PerMinuteOf(quota.Tokens); of > 0 {
			out.Pool.Tokens.Used += max(gu.Totals.LastMinute.Tokens, 0)
			out.Pool.Tokens.Of += of
		}
	}
	return out
}

// windowText is a reading's window as the JSON gives it: "1m", "1h", "24h".
func windowText(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// minuteCounts are the count fields of quota.Minute: every int64 field,
// by its JSON name. Read once, so a count added to quota.Minute (as the
// borrowed calls of issue 23) shows up in Columns and Counts by itself.
var minuteCounts = func() []struct {
	name  string
	index int
} {
	var out []struct {
		name  string
		index int
	}
	t := reflect.TypeFor[quota.Minute]()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() != reflect.Int64 {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, struct {
			name  string
			index int
		}{name, i})
	}
	return out
}()

// counts is m's counts by JSON name.
func counts(m quota.Minute) map[string]int64 {
	v := reflect.ValueOf(m)
	out := make(map[string]int64, len(minuteCounts))
	for _, c := range minuteCounts {
		out[c.name] = v.Field(c.index).Int()
	}
	return out
}

// columns turns minutes into one array per count, leaving out a count
// that is zero throughout.
func columns(ms []quota.Minute) map[string][]int64 {
	out := map[string][]int64{}
	for _, c := range minuteCounts {
		col := make([]int64, len(ms))
		nonzero := false
		for i, m := range ms {
			col[i] = reflect.ValueOf(m).Field(c.index).Int()
			nonzero = nonzero || col[i] != 0
		}
		if nonzero {
			out[c.name] = col
		}
	}
	return out
}

// usageCollector exports the limiter's counts at scrape time: per group,
// counters that add up every full minute of usage since this server started
// counting (read from the per-minute hashes, so the limiter's hot path
// counts nothing extra), and per limit the fraction used in the last full
// minute. A Settle landing after its minute was counted is not added.
type usageCollector struct {
	s *Server

	mu   sync.Mutex
	last int64 // the last full minute added to the counters (0 = none yet)
	sums map[string]quota.Minute
}

// maxCatchUp bounds how many missed minutes one scrape reads.
const maxCatchUp = 60

// Throttle and failure reports are exported by the health collector
// (report.go) from the exact lifetime counters of health.lua, not from
// usage minutes.
var (
	descGroupRequests = prometheus.NewDesc("allot_group_requests_total", "Calls allowed by the group's limiter, by full minute since this server started counting.", []string{"group"}, nil)
	descGroupTokens   = prometheus.NewDesc("allot_group_tokens_total", "Tokens used (reserved, corrected by Settle).", []string{"group"}, nil)
	descGroupRejected = prometheus.NewDesc("allot_group_rejected_total", "Calls refused by the group's limiter.", []string{"group"}, nil)
	descGroupBorrowed = prometheus.NewDesc("allot_group_borrowed_total", "Calls of allot_group_requests_total that nodes not holding the group borrowed.", []string{"group"}, nil)
	descLimitUsed     = prometheus.NewDesc("allot_limit_used_ratio", "Fraction of a limit used over its window: the last full minute against the rate per minute for a limit per second or minute, the last hour or day against the rate for one per hour or day (1 = all of it).", []string{"group", "limit"}, nil)
)

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGroupRequests, descGroupTokens, descGroupRejected, descGroupBorrowed, descLimitUsed} {
		ch <- d
	}
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.ctx, scrapeTimeout)
	defer cancel()
	groups, err := c.s.reg.List(ctx)
	if err != nil {
		return // allot_redis_up says so
	}
	var names []string
	var limited []registry.Group
	for _, g := range groups {
		if !g.Limits.IsZero() {
			names = append(names, g.Name)
			limited = append(limited, g)
		}
	}
	cur, err := c.s.reg.CurrentMinute(ctx)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sums == nil {
		c.sums = map[string]quota.Minute{}
	}
	for m := max(c.last+1, cur-maxCatchUp); m <= cur-1; m++ {
		use, err := c.s.reg.MinuteUsage(ctx, names, m)
		if err != nil {
			return
		}
		for n, u := range use {
			s := c.sums[n]
			s.Requests += u.Requests
			s.Tokens += max(u.Tokens, 0)
			s.Rejected += u.Rejected
			s.Borrowed += u.Borrowed
			c.sums[n] = s
		}
		c.last = m
	}
	use, err := c.s.usage.Read(ctx, limited, 0)
	if err != nil {
		return
	}
	for _, g := range limited {
		t := c.sums[g.Name]
		for d, v := range map[*prometheus.Desc]int64{descGroupRequests: t.Requests, descGroupTokens: t.Tokens,
			descGroupRejected: t.Rejected, descGroupBorrowed: t.Borrowed} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), g.Name)
		}
		for _, u := range g.Limits.Read(use.Groups[g.Name].Totals) {
			ch <- prometheus.MustNewConstMetric(descLimitUsed, prometheus.GaugeValue, u.Ratio, g.Name, u.Limit.String())
		}
	}
}
