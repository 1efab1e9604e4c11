package quota

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Kind is what a limit counts.
type Kind string

// The kinds of limit.
const (
	// Requests counts calls: every Allow and Reserve takes one.
	Requests Kind = "requests"
	// Tokens counts tokens (LLM-style TPM): Reserve takes its estimate and
	// Settle corrects it.
	Tokens Kind = "tokens"
)

const (
	// MaxLimits is the most limits one quota may have.
	MaxLimits = 8
	// MaxRate bounds a limit's rate and burst, so the limiter's arithmetic
	// (microseconds in a float64) stays exact.
	MaxRate = 1_000_000_000
	// MaxCost bounds one call's cost; anything above is an error, never a
	// wait.
	MaxCost = MaxRate
	// MaxRefill bounds how long a limit's burst takes to refill (Per ×
	// burst ÷ Rate): "1/d burst 1000" would take 1000 days. With it, every
	// time the limiter script stores or answers stays below 2^53 µs.
	MaxRefill = 366 * Day
)

// Day is the period of a "/d" limit.
const Day = 24 * time.Hour

// Limit is one limit of a key: Rate of Kind per Per, with an optional
// Burst (0 = the whole Rate may be spent at once).
type Limit struct {
	Kind  Kind
	Rate  int64
	Per   time.Duration
	Burst int64
}

// Limits is every limit of a key, all enforced together, in the order the
// quota text gave them. The zero value is no limit at all.
type Limits []Limit

var units = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
	"d": Day, "day": Day,
}

// Parse parses a quota text: limits separated by commas, each
// "N/UNIT" (requests) or "N tokens/UNIT", optionally followed by "burst B";
// UNIT is s, m, h or d. "" is no limit. Errors are *ParseError naming the
// limit: unknown kind or unit, a rate or burst that is not a whole number
// above 0, two limits of the same kind and period, more than MaxLimits.
func Parse(text string) (Limits, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	parts := strings.Split(text, ",")
	if len(parts) > MaxLimits {
		return nil, &ParseError{Text: text, Reason: fmt.Sprintf("%d limits, at most %d", len(parts), MaxLimits)}
	}
	out := make(Limits, 0, len(parts))
	for i, p := range parts {
		l, reason := parseLimit(p)
		if reason == "" {
			reason = l.problem()
		}
		if reason == "" {
			for j, o := range out {
				if o.Kind == l.Kind && o.Per == l.Per {
					reason = fmt.Sprintf("same kind and period as limit %d", j+1)
				}
			}
		}
		if reason != "" {
			return nil, &ParseError{Pos: i + 1, Text: strings.TrimSpace(p), Reason: reason}
		}
		out = append(out, l)
	}
	return out, nil
}

// parseLimit parses one limit; a non-empty reason says what is wrong.
func parseLimit(s string) (Limit, string) {
	f := strings.Fields(strings.ToLower(s))
	if len(f) == 0 {
		return Limit{}, "empty limit"
	}
	l := Limit{Kind: Requests}
	rate, rest, ok := strings.Cut(f[0], "/")
	f = f[1:]
	if !ok {
		// "90000 tokens/m": the kind sits between the rate and the slash.
		if len(f) == 0 {
			return Limit{}, "want N/UNIT or N tokens/UNIT"
		}
		var kind string
		if kind, rest, ok = strings.Cut(f[0], "/"); !ok {
			return Limit{}, "want N/UNIT or N tokens/UNIT"
		}
		f = f[1:]
		switch kind {
		case "tokens", "token":
			l.Kind = Tokens
		case "requests", "request", "calls", "call":
		default:
			return Limit{}, fmt.Sprintf("unknown kind %q (want tokens, or nothing for requests)", kind)
		}
	}
	var reason string
	if l.Rate, reason = count("rate", rate); reason != "" {
		return Limit{}, reason
	}
	if l.Per, ok = units[rest]; !ok {
		return Limit{}, fmt.Sprintf("unknown unit %q (want s, m, h or d)", rest)
	}
	switch {
	case len(f) == 0:
	case len(f) == 2 && f[0] == "burst":
		if l.Burst, reason = count("burst", f[1]); reason != "" {
			return Limit{}, reason
		}
	default:
		return Limit{}, fmt.Sprintf("unexpected %q (want nothing or burst B)", strings.Join(f, " "))
	}
	return l, ""
}

func count(what, s string) (int64, string) {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Sprintf("%s %s is too large (at most %d)", what, s, int64(MaxRate))
	case err != nil:
		return 0, fmt.Sprintf("%s %q is not a whole number", what, s)
	case n <= 0:
		return 0, fmt.Sprintf("%s must be above 0, not %d", what, n)
	case n > MaxRate:
		return 0, fmt.Sprintf("%s %d is too large (at most %d)", what, n, int64(MaxRate))
	}
	return n, ""
}

// NewLimit returns the limit rate of kind per per (time.Second,
// time.Minute, time.Hour or Day) with burst (0 = rate), or an error
// wrapping ErrInvalidLimit when no quota text could give it.
func NewLimit(kind Kind, rate int64, per time.Duration, burst int64) (Limit, error) {
	l := Limit{Kind: kind, Rate: rate, Per: per, Burst: burst}
	return l, l.Validate()
}

// Validate returns nil for a limit Parse could produce, and an error
// wrapping ErrInvalidLimit otherwise: a kind other than Requests or Tokens
// (the zero Kind included), a rate outside 1..MaxRate, a period other than
// s, m, h or d, a burst outside 0..MaxRate, or a burst that takes longer
// than MaxRefill to refill. The limiter refuses invalid limits before any
// round trip.
func (l Limit) Validate() error {
	if reason := l.problem(); reason != "" {
		return fmt.Errorf("%w: %s: %s", ErrInvalidLimit, l.describe(), reason)
	}
	return nil
}

// describe names a limit in an error, even one String cannot render.
func (l Limit) describe() string {
	return fmt.Sprintf("{kind %q, rate %d, per %v, burst %d}", string(l.Kind), l.Rate, l.Per, l.Burst)
}

// problem says what is wrong with l, "" when nothing is.
func (l Limit) problem() string {
	switch {
	case l.Kind != Requests && l.Kind != Tokens:
		return fmt.Sprintf("unknown kind %q (want %q or %q)", string(l.Kind), Requests, Tokens)
	case l.Rate <= 0 || l.Rate > MaxRate:
		return fmt.Sprintf("rate %d is not within 1..%d", l.Rate, int64(MaxRate))
	case l.Per != time.Second && l.Per != time.Minute && l.Per != time.Hour && l.Per != Day:
		return fmt.Sprintf("period %v is not one of 1s, 1m, 1h, 24h", l.Per)
	case l.Burst < 0 || l.Burst > MaxRate:
		return fmt.Sprintf("burst %d is not within 0..%d", l.Burst, int64(MaxRate))
	case l.refill() > float64(MaxRefill):
		return fmt.Sprintf("burst %d takes %v to refill at %d per %s (at most %v)",
			l.EffectiveBurst(), time.Duration(l.refill()).Round(time.Hour), l.Rate, l.Unit(), MaxRefill)
	}
	return ""
}

// refill is how long (ns) an empty limit takes to refill its burst.
func (l Limit) refill() float64 {
	return float64(l.Per) * float64(l.EffectiveBurst()) / float64(l.Rate)
}

// Validate returns nil for limits Parse could produce: at most MaxLimits,
// each valid (Limit.Validate), no two of the same kind and period. Errors
// wrap ErrInvalidLimit.
func (ls Limits) Validate() error {
	if len(ls) > MaxLimits {
		return fmt.Errorf("%w: %d limits, at most %d", ErrInvalidLimit, len(ls), MaxLimits)
	}
	for i, l := range ls {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("limit %d: %w", i+1, err)
		}
		for j, o := range ls[:i] {
			if o.Kind == l.Kind && o.Per == l.Per {
				return fmt.Errorf("%w: limit %d has the same kind and period as limit %d", ErrInvalidLimit, i+1, j+1)
			}
		}
	}
	return nil
}

// IsZero reports whether ls limits nothing.
func (ls Limits) IsZero() bool { return len(ls) == 0 }

// String is the canonical text, e.g. "600/m, 90000 tokens/m, 10000/d"
// ("" for no limit). Parse(ls.String()) gives ls back.
func (ls Limits) String() string {
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.String()
	}
	return strings.Join(parts, ", ")
}

// String is the canonical text of one limit: "600/m", "90000 tokens/m",
// "100/s burst 20".
func (l Limit) String() string {
	return l.text(strconv.FormatInt(l.Rate, 10))
}

func (l Limit) text(rate string) string {
	s := rate
	if l.Kind == Tokens {
		s += " tokens"
	}
	s += "/" + l.Unit()
	if l.Burst > 0 && l.Burst != l.Rate {
		s += " burst " + strconv.FormatInt(l.Burst, 10)
	}
	return s
}

// Unit is the unit letter of the limit's period: s, m, h or d.
func (l Limit) Unit() string {
	switch l.Per {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	case Day:
		return "d"
	}
	return l.Per.String()
}

// EffectiveBurst is the most that may be spent at once: Burst, or Rate when
// no burst was given.
func (l Limit) EffectiveBurst() int64 {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Rate
}

// PerMinute is the limit's sustained rate per minute (a daily limit of
// 14400 is 10 per minute).
func (l Limit) PerMinute() float64 {
	return float64(l.Rate) * float64(time.Minute) / float64(l.Per)
}

// Cost is what a call of requests and tokens takes from l.
func (l Limit) Cost(requests, tokens int64) int64 {
	if l.Kind == Tokens {
		return tokens
	}
	return requests
}

// field names the limit's state in the limiter hash: kind and period, so a
// quota change that keeps a limit keeps its state.
func (l Limit) field() string {
	return l.kindCode() + ":" + strconv.FormatInt(int64(l.Per/time.Millisecond), 10)
}

// kindCode is the kind's letter in the limiter's state and ARGV.
func (l Limit) kindCode() string {
	if l.Kind == Tokens {
		return "t"
	}
	return "r"
}

// Share is the text of one holder's part of every limit when n nodes hold
// the group, e.g. "600/m, 90000 tokens/m" shared by 4 is
// "150/m, 22500 tokens/m" and 600/m by 7 is "85.71/m". n <= 1 gives the
// whole limits. Bursts are left out: they are the group's, not a holder's.
func (ls Limits) Share(n int) string {
	if n < 1 {
		n = 1
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		r := strconv.FormatFloat(float64(l.Rate)/float64(n), 'f', 2, 64)
		r = strings.TrimRight(strings.TrimRight(r, "0"), ".")
		parts[i] = Limit{Kind: l.Kind, Per: l.Per}.text(r)
	}
	return strings.Join(parts, ", ")
}

// AutoWeight is the weight a group gets from its limits: its sustained
// requests per minute (the tightest request limit); without a request
// limit its tokens per minute ÷ 1000. 0 when ls is empty.
func (ls Limits) AutoWeight() float64 {
	req, tok := math.Inf(1), math.Inf(1)
	for _, l := range ls {
		if l.Kind == Tokens {
			tok = min(tok, l.PerMinute())
		} else {
			req = min(req, l.PerMinute())
		}
	}
	switch {
	case !math.IsInf(req, 1):
		return req
	case !math.IsInf(tok, 1):
		return tok / 1000
	}
	return 0
}

// CheckCost returns nil when a call of requests and tokens fits in every
// limit's burst, a *CostError (ErrCostTooLarge) when it never can, and
// ErrInvalidCost for a negative or absurd cost.
func (ls Limits) CheckCost(requests, tokens int64) error {
	if requests < 0 || tokens < 0 || requests > MaxCost || tokens > MaxCost {
		return fmt.Errorf("%w: %d requests, %d tokens", ErrInvalidCost, requests, tokens)
	}
	for _, l := range ls {
		if c := l.Cost(requests, tokens); c > l.EffectiveBurst() {
			return &CostError{Limit: l, Cost: c}
		}
	}
	return nil
}

// limitJSON is the JSON shape of a Limit: {kind, rate, per, burst} with per
// the unit letter and burst the effective burst.
type limitJSON struct {
	Kind  Kind   `json:"kind"`
	Rate  int64  `json:"rate"`
	Per   string `json:"per"`
	Burst int64  `json:"burst"`
}

// MarshalJSON writes {kind, rate, per, burst}: per is "s", "m", "h" or
// "d", burst the effective burst.
func (l Limit) MarshalJSON() ([]byte, error) {
	return json.Marshal(limitJSON{Kind: l.Kind, Rate: l.Rate, Per: l.Unit(), Burst: l.EffectiveBurst()})
}

// UnmarshalJSON reads the shape MarshalJSON writes, and refuses what no
// quota text could give (Validate): the error wraps ErrInvalid and
// ErrInvalidLimit.
func (l *Limit) UnmarshalJSON(b []byte) error {
	var j limitJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	per, ok := units[j.Per]
	if !ok {
		return fmt.Errorf("%w: unknown unit %q", ErrInvalid, j.Per)
	}
	v := Limit{Kind: j.Kind, Rate: j.Rate, Per: per, Burst: j.Burst}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	*l = v
	return nil
}

// UnmarshalJSON reads a list of limits and refuses what no quota text could
// give (Limits.Validate: too many, two of the same kind and period).
func (ls *Limits) UnmarshalJSON(b []byte) error {
	var v []Limit
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if err := Limits(v).Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	*ls = v
	return nil
}
