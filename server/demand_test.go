package server_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/allocator"
	"github.com/allot-io/allot/heartbeat"
	"github.com/allot-io/allot/registry"
	"github.com/allot-io/allot/server"
)

// An HTTP node's heartbeat may carry its demand; status shows it, with the
// group's summed demand against its quota. A bad figure is refused before
// anything is written, the beat included: 422 for a value out of range (as
// every invalid beat field), 400 for what JSON cannot carry (NaN, 1e400).
func TestNodeDemandOverHTTP(t *testing.T) {
	a := newAPI(t, server.WithHeartbeat(slowLoop))
	quota := "600/m"
	a.addGroup("g", registry.Change{Quota: &quota})
	session := a.join("n1")
	r := a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, session,
		map[string]any{"ip": "10.0.0.9", "demand": map[string]any{"calls": 12.5, "tokens": 300}})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	a.settled(adminToken)

	var st allocator.Status
	a.do("GET", "/v1/status", adminToken, nil).json(t, &st)
	require.Len(t, st.Nodes, 1)
	assert.Equal(t, &heartbeat.Demand{Calls: 12.5, Tokens: 300}, st.Nodes[0].Demand)
	require.Len(t, st.Groups, 1)
	assert.Equal(t, heartbeat.Demand{Calls: 12.5, Tokens: 300}, st.Groups[0].Demand)
	assert.InDelta(t, 1.25, st.Groups[0].Wanted, 1e-9, "12.5 calls/s of 10/s")

	before := a.settled(adminToken)
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"demand": {"calls": -1}}`, http.StatusUnprocessableEntity, "invalid"},
		{`{"demand": {"calls": 1, "tokens": 2e9}}`, http.StatusUnprocessableEntity, "invalid"},
		{`{"demand": {"calls": NaN}}`, http.StatusBadRequest, "bad_request"},
		{`{"demand": {"calls": 1e400}}`, http.StatusBadRequest, "bad_request"},
		{`{"demand": {"calls": "20"}}`, http.StatusBadRequest, "bad_request"},
		{`{"demand": {"cals": 20}}`, http.StatusBadRequest, "bad_request"},
	} {
		r := a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, session, tc.body)
		a.refused(r, tc.status, tc.code, before)
		if tc.status == http.StatusUnprocessableEntity {
			assert.Contains(t, string(r.body), "demand", tc.body)
		}
	}
	// Without the field the stored demand stays.
	r = a.doSession("POST", "/v1/nodes/n1/heartbeat", nodeToken, session, map[string]any{"ip": "10.0.0.9"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	a.do("GET", "/v1/status", adminToken, nil).json(t, &st)
	assert.Equal(t, &heartbeat.Demand{Calls: 12.5, Tokens: 300}, st.Nodes[0].Demand)
}
