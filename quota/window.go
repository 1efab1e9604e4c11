package quota

import "time"

// A limit's use is read over the window that makes it mean something. A
// limit per second or per minute is a pace: its reading is the last full
// minute against the limit's rate per minute. A limit per hour or per day
// is a budget: its reading is what the last hour or the last day used
// (the current minute included) against the limit's rate — "6 of 10000
// today", where the per-minute pace would call 6 requests 86% of
// 10000/d. The windows roll with the minutes: the limiter is a GCRA with
// no calendar day in it, so a window that resets at midnight would read
// something the limiter never counted.

// Window is the span a limit's use is read over: one minute (the last
// full one) for a limit per second or per minute, the limit's own period
// for one per hour or per day.
func (l Limit) Window() time.Duration {
	if l.Per > time.Minute {
		return l.Per
	}
	return time.Minute
}

// Allowance is what the limit allows over its Window: its rate per minute
// for a limit per second or minute, its rate for one per hour or day.
func (l Limit) Allowance() float64 {
	if l.Per > time.Minute {
		return float64(l.Rate)
	}
	return l.PerMinute()
}

// Totals is a group's use summed over the windows limits are read over.
type Totals struct {
	// LastMinute is the last full minute.
	LastMinute Minute
	// Hour is the last 60 minutes, the current one included.
	Hour Minute
	// Day is the last 1440 minutes, the current one included.
	Day Minute
}

// In is the use summed over window (time.Minute, time.Hour or Day).
func (t Totals) In(window time.Duration) Minute {
	switch {
	case window >= Day:
		return t.Day
	case window >= time.Hour:
		return t.Hour
	}
	return t.LastMinute
}

// Add adds m to s, field by field (Minute keeps s's).
func (s Minute) Add(m Minute) Minute {
	s.Requests += m.Requests
	s.Tokens += m.Tokens
	s.Rejected += m.Rejected
	s.Throttled += m.Throttled
	s.Failures += m.Failures
	s.Borrowed += m.Borrowed
	return s
}

// IsZero reports whether m counts nothing (its Minute aside).
func (m Minute) IsZero() bool {
	return m.Requests == 0 && m.Tokens == 0 && m.Rejected == 0 && m.Throttled == 0 && m.Failures == 0 && m.Borrowed == 0
}

// Use is the reading of one limit: Used of Of over Window.
type Use struct {
	Limit Limit
	// Window is the span read (Limit.Window).
	Window time.Duration
	// Used is the requests or tokens counted in the window.
	Used int64
	// Of is what the limit allows over the window (Limit.Allowance).
	Of float64
	// Ratio is Used / Of: 0.5 is half; above 1 is over (a burst spent on
	// top of the rate).
	Ratio float64
}

// Read is the reading of every limit of ls from t, in the order of ls.
func (ls Limits) Read(t Totals) []Use {
	out := make([]Use, len(ls))
	for i, l := range ls {
		w := l.Window()
		m := t.In(w)
		used := m.Requests
		if l.Kind == Tokens {
			used = max(m.Tokens, 0)
		}
		of := l.Allowance()
		out[i] = Use{Limit: l, Window: w, Used: used, Of: of, Ratio: float64(used) / of}
	}
	return out
}

// MostUsed is the highest Ratio of ls's readings from t; 0 for no limits.
// It is the `used` of `allot status`, GET /v1/status and the web UI.
func (ls Limits) MostUsed(t Totals) float64 {
	most := 0.0
	for _, u := range ls.Read(t) {
		most = max(most, u.Ratio)
	}
	return most
}

// WindowMinutes is how many minutes, the current one included, a reading
// of ls needs: 1440 with a limit per day, 60 with one per hour, else 2
// (the current minute and the last full one).
func (ls Limits) WindowMinutes() int {
	n := 2
	for _, l := range ls {
		n = max(n, int(l.Window()/time.Minute))
	}
	return n
}

// PerMinuteOf is the sustained rate per minute of the tightest limit of
// kind in ls (for requests, AutoWeight's number: "600/m, 10000/d" gives
// 6.94); 0 when ls has no limit of kind. A pool's capacity per minute is
// the sum of its groups'.
func (ls Limits) PerMinuteOf(kind Kind) float64 {
	tight := 0.0
	for _, l := range ls {
		if l.Kind == kind && (tight == 0 || l.PerMinute() < tight) {
			tight = l.PerMinute()
		}
	}
	return tight
}
