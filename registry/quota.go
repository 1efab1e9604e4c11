package registry

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Quota is a call rate shared by every holder of a group: Rate calls per
// Per, with an optional Burst.
type Quota struct {
	Rate  int
	Per   time.Duration
	Burst int
}

var quotaUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
}

// ParseQuota parses "600/m", "10/s", "1000/h" or "100/s burst 20".
func ParseQuota(s string) (Quota, error) {
	bad := func() (Quota, error) { return Quota{}, fmt.Errorf("%w: %q", ErrInvalidQuota, s) }
	f := strings.Fields(strings.ToLower(s))
	if len(f) != 1 && len(f) != 3 {
		return bad()
	}
	rate, unit, ok := strings.Cut(f[0], "/")
	if !ok {
		return bad()
	}
	var q Quota
	var err error
	if q.Rate, err = strconv.Atoi(rate); err != nil || q.Rate <= 0 {
		return bad()
	}
	if q.Per, ok = quotaUnits[unit]; !ok {
		return bad()
	}
	if len(f) == 3 {
		if f[1] != "burst" {
			return bad()
		}
		if q.Burst, err = strconv.Atoi(f[2]); err != nil || q.Burst <= 0 {
			return bad()
		}
	}
	return q, nil
}

// IsZero reports whether q is no quota at all.
func (q Quota) IsZero() bool { return q.Rate == 0 }

// String is the canonical text form, e.g. "600/m" or "100/s burst 20"
// ("" for the zero Quota).
func (q Quota) String() string {
	if q.IsZero() {
		return ""
	}
	s := strconv.Itoa(q.Rate) + "/" + q.unit()
	if q.Burst > 0 {
		s += " burst " + strconv.Itoa(q.Burst)
	}
	return s
}

func (q Quota) unit() string {
	switch q.Per {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	}
	return q.Per.String()
}

// Share is the text of one holder's share when n nodes hold the group,
// e.g. Quota{600, time.Minute, 0}.Share(4) == "150/m" and Share(7) == "85.71/m".
// n <= 1 gives the whole rate.
func (q Quota) Share(n int) string {
	if q.IsZero() {
		return ""
	}
	if n < 1 {
		n = 1
	}
	r := strconv.FormatFloat(float64(q.Rate)/float64(n), 'f', 2, 64)
	r = strings.TrimRight(strings.TrimRight(r, "0"), ".")
	return r + "/" + q.unit()
}
