package main

import (
	"strconv"
	"strings"
)

// weightFlag is --weight: a number, or "auto" to derive the weight from the
// group's quota (registry.Change.WeightAuto).
type weightFlag struct {
	w    float64
	auto bool
}

// String implements pflag.Value.
func (f *weightFlag) String() string {
	if f.auto {
		return "auto"
	}
	return strconv.FormatFloat(f.w, 'g', -1, 64)
}

// Set implements pflag.Value.
func (f *weightFlag) Set(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "auto") {
		f.auto = true
		return nil
	}
	w, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errWeightSyntax
	}
	f.w, f.auto = w, false
	return nil
}

// Type implements pflag.Value.
func (f *weightFlag) Type() string { return "number|auto" }
