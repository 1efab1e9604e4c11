package heartbeat

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Demand is what a node asked of its groups, per second, over about the
// last minute: every call it asked for and the tokens those calls
// estimated, refused or not (see client's demand meter). It rides on the
// beat (Beat.Demand), costs no round trip, and is what the planner places
// nodes by (docs/design.md, "Demand and placement").
type Demand struct {
	// Calls is calls asked for per second.
	Calls float64 `json:"calls"`
	// Tokens is tokens asked for per second.
	Tokens float64 `json:"tokens"`
}

// Demand bounds and the beat's hysteresis. They are passed to beat.lua as
// ARGV: the script decides with these numbers and hard-codes none.
const (
	// MaxDemand bounds each figure of a Demand: 10^9 a second is more than
	// any node asks, so a figure above it is a bug, refused.
	MaxDemand = 1e9

	// DemandChange is the relative change of either figure a beat must
	// bring before the stored demand changes (0.25: a node at 20 calls/s
	// is stored again below 15 or above 25). Smaller changes write nothing
	// and so move nobody; see DemandFloorCalls and DemandFloorTokens.
	DemandChange = 0.25
	// DemandFloorCalls is the smallest change of the calls figure that
	// counts, in calls a second, whatever DemandChange says: near zero
	// every change is a large one.
	DemandFloorCalls = 0.1
	// DemandFloorTokens is the same floor for the tokens figure.
	DemandFloorTokens = 100

	// DemandPlanIntervals is how many heartbeat intervals apart two plans
	// triggered by demand must be at least: a stored demand change asks for
	// a plan at once when the last one was that long ago, and otherwise
	// waits until then (one plan covers every change meanwhile).
	DemandPlanIntervals = 5
)

// Validate reports whether d can be sent: each figure a finite number in
// [0, MaxDemand]. The error wraps ErrInvalidDemand (and so ErrInvalidBeat).
func (d Demand) Validate() error {
	if p := d.problem(); p != "" {
		return fmt.Errorf("%w: %s", ErrInvalidDemand, p)
	}
	return nil
}

func (d Demand) problem() string {
	for _, f := range []struct {
		name string
		v    float64
	}{{"calls", d.Calls}, {"tokens", d.Tokens}} {
		switch {
		case math.IsNaN(f.v):
			return fmt.Sprintf("%s per second is NaN", f.name)
		case math.IsInf(f.v, 0):
			return fmt.Sprintf("%s per second is infinite", f.name)
		case f.v < 0:
			return fmt.Sprintf("%s per second is negative (%g)", f.name, f.v)
		case f.v > MaxDemand:
			return fmt.Sprintf("%s per second is %g, above %g", f.name, f.v, float64(MaxDemand))
		}
	}
	return ""
}

// formatFigure renders a valid figure as beat.lua accepts and stores it: a
// plain decimal, at most three decimals ("20.5", "0", "1000000000").
func formatFigure(v float64) string {
	s := strconv.FormatFloat(v, 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" || s == "-0" {
		return "0"
	}
	return s
}

// demandArgs are the two demand ARGV of beat.lua: "" and "" when the beat
// carries none.
func demandArgs(d *Demand) (calls, tokens string) {
	if d == nil {
		return "", ""
	}
	return formatFigure(d.Calls), formatFigure(d.Tokens)
}

// parseDemand reads the two stored figures of a :members record; nil when
// the node never sent one.
func parseDemand(calls, tokens string) *Demand {
	if calls == "" && tokens == "" {
		return nil
	}
	c, err1 := strconv.ParseFloat(calls, 64)
	t, err2 := strconv.ParseFloat(tokens, 64)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &Demand{Calls: c, Tokens: t}
}
