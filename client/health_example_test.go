package client_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/allot-io/allot/client"
)

// Classify is the rule ObserveHTTP applies to an upstream answer.
func ExampleClassify() {
	now := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	answer := func(code int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	for _, resp := range []*http.Response{answer(429, "30"), answer(429, ""), answer(401, ""), answer(200, ""), answer(503, "")} {
		v := client.Classify(resp, nil, now)
		ra := v.RetryAfter.String()
		if v.RetryAfter == client.NoRetryAfter {
			ra = "none"
		}
		fmt.Printf("%d → %q retry_after=%s reason=%q\n", resp.StatusCode, v.Outcome, ra, v.Reason)
	}
	// Output:
	// 429 → "throttled" retry_after=30s reason=""
	// 429 → "throttled" retry_after=none reason=""
	// 401 → "failure" retry_after=0s reason="HTTP 401 Unauthorized"
	// 200 → "success" retry_after=0s reason=""
	// 503 → "" retry_after=0s reason=""
}
