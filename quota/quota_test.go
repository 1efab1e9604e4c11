package quota

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Limits
		text string
	}{
		{"", nil, ""},
		{"600/m", Limits{{Requests, 600, time.Minute, 0}}, "600/m"},
		{"10/s", Limits{{Requests, 10, time.Second, 0}}, "10/s"},
		{"1000/h", Limits{{Requests, 1000, time.Hour, 0}}, "1000/h"},
		{"100/s burst 20", Limits{{Requests, 100, time.Second, 20}}, "100/s burst 20"},
		{"100/sec BURST 100", Limits{{Requests, 100, time.Second, 100}}, "100/s"},
		{"5/minute", Limits{{Requests, 5, time.Minute, 0}}, "5/m"},
		{"600/m, 90000 tokens/m, 10000/d", Limits{
			{Requests, 600, time.Minute, 0}, {Tokens, 90000, time.Minute, 0}, {Requests, 10000, Day, 0}},
			"600/m, 90000 tokens/m, 10000/d"},
		{" 90000 tokens/m burst 5000 ,600/m", Limits{
			{Tokens, 90000, time.Minute, 5000}, {Requests, 600, time.Minute, 0}},
			"90000 tokens/m burst 5000, 600/m"},
		{"1 token/d, 2 requests/d", Limits{{Tokens, 1, Day, 0}, {Requests, 2, Day, 0}}, "1 tokens/d, 2/d"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.text, got.String())
			again, err := Parse(got.String())
			require.NoError(t, err)
			assert.Equal(t, got.String(), again.String())
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"600/m, 90000 tokns/m", `quota: limit 2 ("90000 tokns/m"): unknown kind "tokns" (want tokens, or nothing for requests)`},
		{"600/w", `quota: limit 1 ("600/w"): unknown unit "w" (want s, m, h or d)`},
		{"0/m", `quota: limit 1 ("0/m"): rate must be above 0, not 0`},
		{"-5/m", `quota: limit 1 ("-5/m"): rate must be above 0, not -5`},
		{"600/m burst 0", `quota: limit 1 ("600/m burst 0"): burst must be above 0, not 0`},
		{"1.5/s", `quota: limit 1 ("1.5/s"): rate "1.5" is not a whole number`},
		{"99999999999999999999/s", `quota: limit 1 ("99999999999999999999/s"): rate 99999999999999999999 is too large (at most 1000000000)`},
		{"600/m, 10/d, 700/m", `quota: limit 3 ("700/m"): same kind and period as limit 1`},
		{"600/m,", `quota: limit 2 (""): empty limit`},
		{"600", `quota: limit 1 ("600"): want N/UNIT or N tokens/UNIT`},
		{"600/m burst", `quota: limit 1 ("600/m burst"): unexpected "burst" (want nothing or burst B)`},
		{"600/m fast", `quota: limit 1 ("600/m fast"): unexpected "fast" (want nothing or burst B)`},
		{"1/d burst 367", `quota: limit 1 ("1/d burst 367"): burst 367 takes 8808h0m0s to refill at 1 per d (at most 8784h0m0s)`},
		{"1/s,2/s,3/s,4/s,5/s,6/s,7/s,8/s,9/s", `quota: "1/s,2/s,3/s,4/s,5/s,6/s,7/s,8/s,9/s": 9 limits, at most 8`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := Parse(tc.in)
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
			assert.True(t, errors.Is(err, ErrInvalid))
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestShareAndWeight(t *testing.T) {
	ls, err := Parse("600/m, 90000 tokens/m, 14400/d")
	require.NoError(t, err)
	assert.Equal(t, "150/m, 22500 tokens/m, 3600/d", ls.Share(4))
	assert.Equal(t, "85.71/m, 12857.14 tokens/m, 2057.14/d", ls.Share(7))
	assert.Equal(t, ls.Share(1), ls.Share(0))
	assert.InDelta(t, 10.0, ls.AutoWeight(), 1e-9) // the daily limit binds: 14400/d = 10/m

	tok, err := Parse("90000 tokens/m")
	require.NoError(t, err)
	assert.InDelta(t, 90.0, tok.AutoWeight(), 1e-9)
	big, err := Parse("3000/m")
	require.NoError(t, err)
	small, err := Parse("600/m")
	require.NoError(t, err)
	assert.InDelta(t, 5.0, big.AutoWeight()/small.AutoWeight(), 1e-9)
	assert.Equal(t, 0.0, Limits(nil).AutoWeight())
}

func TestCheckCost(t *testing.T) {
	ls, err := Parse("600/m burst 10, 1000 tokens/m")
	require.NoError(t, err)
	assert.NoError(t, ls.CheckCost(1, 1000))
	assert.NoError(t, ls.CheckCost(10, 0))
	var ce *CostError
	require.ErrorAs(t, ls.CheckCost(1, 1001), &ce)
	assert.Equal(t, ls[1], ce.Limit)
	assert.ErrorIs(t, ls.CheckCost(11, 0), ErrCostTooLarge)
	assert.ErrorIs(t, ls.CheckCost(1, -1), ErrInvalidCost)
	assert.ErrorIs(t, ls.CheckCost(1, MaxCost+1), ErrInvalidCost)
}

func TestLimitJSON(t *testing.T) {
	ls, err := Parse("600/m, 90000 tokens/m burst 1000, 10000/d")
	require.NoError(t, err)
	b, err := json.Marshal(ls)
	require.NoError(t, err)
	assert.JSONEq(t, `[{"kind":"requests","rate":600,"per":"m","burst":600},
		{"kind":"tokens","rate":90000,"per":"m","burst":1000},
		{"kind":"requests","rate":10000,"per":"d","burst":10000}]`, string(b))
	var back Limits
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, ls.String(), back.String())
}

// TestValidate: a Limit no parser would give is refused at every edge
// (issue 22.5): Validate, NewLimit, JSON, and the limiters (bounds_test.go).
func TestValidate(t *testing.T) {
	for _, ok := range []string{"600/m", "1/d burst 366", "1000000000 tokens/s burst 1000000000", "1/d"} {
		ls := mustParse(t, ok)
		assert.NoError(t, ls.Validate(), ok)
	}
	for name, l := range map[string]Limit{
		"zero":        {},
		"no kind":     {Rate: 10, Per: time.Minute},
		"bad kind":    {Kind: "bytes", Rate: 10, Per: time.Minute},
		"zero rate":   {Kind: Requests, Per: time.Minute},
		"big rate":    {Kind: Requests, Rate: MaxRate + 1, Per: time.Minute},
		"odd period":  {Kind: Requests, Rate: 10, Per: 90 * time.Second},
		"no period":   {Kind: Requests, Rate: 10},
		"neg burst":   {Kind: Requests, Rate: 10, Per: time.Minute, Burst: -1},
		"slow refill": {Kind: Tokens, Rate: 1, Per: Day, Burst: 367},
	} {
		err := l.Validate()
		assert.ErrorIs(t, err, ErrInvalidLimit, name)
		_, err = NewLimit(l.Kind, l.Rate, l.Per, l.Burst)
		assert.ErrorIs(t, err, ErrInvalidLimit, name)
		assert.NotPanics(t, func() { _ = l.Validate().Error() }, name)
	}
	l, err := NewLimit(Tokens, 90000, time.Minute, 0)
	require.NoError(t, err)
	assert.Equal(t, "90000 tokens/m", l.String())
	assert.ErrorIs(t, Limits{l, l}.Validate(), ErrInvalidLimit, "same kind and period")

	for _, j := range []string{
		`{"kind":"","rate":10,"per":"m","burst":10}`,
		`{"kind":"bytes","rate":10,"per":"m","burst":10}`,
		`{"kind":"requests","rate":0,"per":"m","burst":0}`,
		`{"kind":"tokens","rate":-5,"per":"s","burst":1}`,
		`{"kind":"tokens","rate":1,"per":"d","burst":100000}`,
	} {
		var got Limit
		err := json.Unmarshal([]byte(j), &got)
		assert.ErrorIs(t, err, ErrInvalid, j)
		assert.ErrorIs(t, err, ErrInvalidLimit, j)
	}
	var ls Limits
	err = json.Unmarshal([]byte(`[{"kind":"requests","rate":1,"per":"m","burst":1},{"kind":"requests","rate":2,"per":"m","burst":2}]`), &ls)
	assert.ErrorIs(t, err, ErrInvalidLimit, "same kind and period")
	_, err = NewLocal(nil).Take("g", Limits{{}}, 1, 1, 0)
	assert.ErrorIs(t, err, ErrInvalidLimit, "the local fallback refuses them too")
}

// TestUsed: the per-minute reading is for limits per second and minute;
// a daily limit is not read as a pace (6 requests against 10000/d were
// 86% of its per-minute share).
func TestUsed(t *testing.T) {
	ls, err := Parse("600/m, 90000 tokens/m, 14400/d")
	require.NoError(t, err)
	assert.InDelta(t, 0.5, ls.Used(Minute{Requests: 5, Tokens: 45000}), 1e-9)
	daily, err := Parse("10000/d")
	require.NoError(t, err)
	assert.Zero(t, daily.Used(Minute{Requests: 6}), "a daily limit has no per-minute reading")
	perSecond, err := Parse("10/s")
	require.NoError(t, err)
	assert.InDelta(t, 0.25, perSecond.Used(Minute{Requests: 150}), 1e-9, "150 in a minute of 600")
}

// TestRead: limits per second and minute are read over the last full
// minute, per hour and day over their own window ("used today 6 / 10000").
func TestRead(t *testing.T) {
	ls, err := Parse("600/m, 90000 tokens/m, 100/h, 10000/d, 10/s")
	require.NoError(t, err)
	tot := Totals{
		LastMinute: Minute{Requests: 300, Tokens: 9000},
		Hour:       Minute{Requests: 50, Tokens: 20000},
		Day:        Minute{Requests: 6, Tokens: 30000},
	}
	got := ls.Read(tot)
	require.Len(t, got, 5)
	want := []Use{
		{Limit: ls[0], Window: time.Minute, Used: 300, Of: 600, Ratio: 0.5},
		{Limit: ls[1], Window: time.Minute, Used: 9000, Of: 90000, Ratio: 0.1},
		{Limit: ls[2], Window: time.Hour, Used: 50, Of: 100, Ratio: 0.5},
		{Limit: ls[3], Window: Day, Used: 6, Of: 10000, Ratio: 0.0006},
		{Limit: ls[4], Window: time.Minute, Used: 300, Of: 600, Ratio: 0.5},
	}
	for i := range want {
		assert.Equal(t, want[i].Window, got[i].Window, "limit %d", i)
		assert.Equal(t, want[i].Used, got[i].Used, "limit %d", i)
		assert.InDelta(t, want[i].Of, got[i].Of, 1e-9, "limit %d", i)
		assert.InDelta(t, want[i].Ratio, got[i].Ratio, 1e-9, "limit %d", i)
	}
	assert.InDelta(t, 0.5, ls.MostUsed(tot), 1e-9)
	assert.Equal(t, 1440, ls.WindowMinutes())
	assert.Equal(t, 60, Limits{ls[2]}.WindowMinutes())
	assert.Equal(t, 2, Limits{ls[0]}.WindowMinutes())
	assert.Zero(t, Limits(nil).MostUsed(tot))
	assert.InDelta(t, 100.0/60, ls.PerMinuteOf(Requests), 1e-9, "100/h is the tightest pace")
	assert.InDelta(t, 10000.0/1440, Limits{ls[0], ls[3]}.PerMinuteOf(Requests), 1e-9, "600/m, 10000/d: the daily pace")
	assert.InDelta(t, 90000, ls.PerMinuteOf(Tokens), 1e-9)
	assert.Zero(t, Limits{ls[0]}.PerMinuteOf(Tokens))
	// A refund below zero never reads as negative use.
	assert.Zero(t, Limits{ls[1]}.Read(Totals{LastMinute: Minute{Tokens: -5}})[0].Used)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"600/m", "100/s burst 20", "600/m, 90000 tokens/m, 10000/d", "1 token/d", ",", "tokens/m", "9 tokens/ m burst"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n") && !strings.Contains(s, "\n") {
				t.Fatalf("Parse(%q): bad error %v", s, err)
			}
			return
		}
		if len(ls) > MaxLimits {
			t.Fatalf("Parse(%q): %d limits", s, len(ls))
		}
		if err := ls.Validate(); err != nil {
			t.Fatalf("Parse(%q) gave limits that do not validate: %v", s, err)
		}
		for _, l := range ls {
			if l.Rate <= 0 || l.Rate > MaxRate || l.Burst < 0 || l.Burst > MaxRate || l.Per <= 0 {
				t.Fatalf("Parse(%q): bad limit %+v", s, l)
			}
		}
		again, err := Parse(ls.String())
		if err != nil || again.String() != ls.String() {
			t.Fatalf("Parse(%q).String() = %q does not parse back: %v", s, ls.String(), err)
		}
	})
}
