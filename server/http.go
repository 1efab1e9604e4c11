package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/allot-io/allot/internal/statusrec"
)

// handlerFunc is a route handler: it writes its answer or returns the error
// to answer with.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// routes builds the mux. Every route states the access it needs.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, need access, fn handlerFunc) {
		mux.Handle(pattern, s.wrap(need, fn))
	}

	h("GET /healthz", public, s.healthz)
	h("GET /readyz", public, s.readyz)
	mux.Handle("GET /metrics", s.wrap(readAccess, s.metrics.serve))

	h("GET /v1/groups", readAccess, s.listGroups)
	h("POST /v1/groups", adminAccess, s.addGroup)
	h("GET /v1/groups/{name}", readAccess, s.getGroup)
	h("PATCH /v1/groups/{name}", adminAccess, s.updateGroup)
	h("DELETE /v1/groups/{name}", adminAccess, s.deleteGroup)
	h("POST /v1/groups/{name}/retire", adminAccess, s.retireGroup)
	h("GET /v1/groups/{name}/history", readAccess, s.groupHistory)
	h("POST /v1/groups/{name}/rollback", adminAccess, s.rollbackGroup)
	h("POST /v1/groups/{name}/suspend", adminAccess, s.suspendGroup)
	h("POST /v1/groups/{name}/resume", adminAccess, s.resumeGroup)
	h("POST /v1/groups/{name}/cool", adminAccess, s.coolGroup)
	h("GET /v1/groups/{name}/usage", readAccess, s.groupUsage)
	h("GET /v1/usage", readAccess, s.poolUsage)

	h("GET /v1/nodes", readAccess, s.listNodes)
	h("GET /v1/status", readAccess, s.status)
	h("POST /v1/rebalance", adminAccess, s.rebalanceNow)

	h("GET /v1/schedule", readAccess, s.listSchedule)
	h("POST /v1/schedule", adminAccess, s.addSchedule)
	h("DELETE /v1/schedule/{id}", adminAccess, s.cancelSchedule)

	h("GET /v1/export", readAccess, s.export)
	h("POST /v1/import", adminAccess, s.importPool)

	h("GET /v1/events", readAccess, s.events)
	h("GET /v1/events/recent", readAccess, s.recentEvents)

	h("POST /v1/nodes/{id}/heartbeat", nodeAccess, s.nodeHeartbeat)
	h("GET /v1/nodes/{id}/assignment", nodeAccess, s.nodeAssignment)
	h("DELETE /v1/nodes/{id}", nodeAccess, s.nodeLeave)
	h("POST /v1/nodes/{id}/report", nodeAccess, s.nodeReport)
	h("POST /v1/nodes/{id}/acquire", nodeAccess, s.nodeAcquire)
	h("POST /v1/nodes/{id}/leases/{lease}/settle", nodeAccess, s.leaseSettle)
	h("POST /v1/nodes/{id}/leases/{lease}/observe", nodeAccess, s.leaseObserve)

	h("GET /v1/dev/nodes", readAccess, s.devNodes)
	h("POST /v1/dev/nodes", adminAccess, s.devAdd)
	h("POST /v1/dev/nodes/{id}/stop", adminAccess, s.devStop)
	h("POST /v1/dev/nodes/{id}/start", adminAccess, s.devStart)

	// Unknown /v1 routes answer in JSON like the rest of the API (the web UI
	// owns every other GET path).
	h("GET /v1/", public, func(http.ResponseWriter, *http.Request) error {
		return errNotFound("no such route")
	})
	mux.Handle("GET /", webHandler())

	return s.count(compress(s.browserSafe(s.jsonMisses(mux))))
}

// jsonMisses answers requests no route matches (404, or 405 when another
// method would match) with the JSON error body instead of the mux's text.
func (s *Server) jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch rec.status {
		case http.StatusMethodNotAllowed:
			s.writeError(w, r, &apiError{status: rec.status, code: CodeBadRequest, message: "method " + r.Method + " not allowed here"})
		case http.StatusNotFound, 0:
			s.writeError(w, r, errNotFound("no such route"))
		default: // a redirect (trailing slash, cleaned path): let the mux answer
			mux.ServeHTTP(w, r)
		}
	})
}

// headerRecorder captures a status and headers and discards the body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(code int)        { h.status = code }

// wrap authorizes the request, runs fn and answers its error.
func (s *Server) wrap(need access, fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, aerr := s.authorize(r, need)
		if aerr != nil {
			if aerr.status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="allot"`)
			}
			s.writeError(w, r, aerr)
			return
		}
		r = r.WithContext(withCredential(r.Context(), cred))
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// count records allot_http_requests_total by route pattern and status code.
func (s *Server) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusrec.Recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		code := rec.Status
		if code == 0 {
			code = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	})
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	switch {
	case ae.status >= 500:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", ae.status, "err", err)
	default:
		s.log.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "status", ae.status, "code", ae.code)
	}
	var b errorBody
	b.Error.Code, b.Error.Message = ae.code, ae.message
	switch {
	case ae.retryAfter > 0:
		w.Header().Set("Retry-After", retryAfterHeader(ae.retryAfter))
	case ae.status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, ae.status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decodeJSON reads one JSON value from the body (at most limit bytes),
// refusing unknown fields. An empty body is an error unless allowEmpty.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, allowEmpty bool) error {
	if r.ContentLength > limit {
		return errTooLarge(limit) // before reading a byte
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge(mbe.Limit)
		}
		return errBadRequest("read body: %v", err)
	}
	if err := checkUTF8(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return errTooLarge(mbe.Limit)
		case errors.Is(err, io.EOF):
			if allowEmpty {
				return nil
			}
			return errBadRequest("empty request body: want a JSON object")
		}
		return errBadRequest("malformed JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge(mbe.Limit)
		}
		return errBadRequest("malformed JSON body: data after the JSON value")
	}
	return nil
}

// checkUTF8 refuses a JSON body that is not valid UTF-8 or escapes half a
// UTF-16 surrogate pair: encoding/json would silently store U+FFFD in
// place of such text, a value that is not the one sent.
func checkUTF8(body []byte) error {
	if !utf8.Valid(body) {
		return errBadRequest("request body is not valid UTF-8")
	}
	for i := 0; i+6 <= len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if body[i+1] != 'u' {
			i++ // an escaped character, maybe a backslash
			continue
		}
		r, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 32)
		if err != nil || r < 0xd800 || r > 0xdfff {
			continue
		}
		if r >= 0xdc00 || i+12 > len(body) || body[i+6] != '\\' || body[i+7] != 'u' {
			return errBadRequest("request body escapes an unpaired UTF-16 surrogate (\\u%04x)", r)
		}
		lo, err := strconv.ParseUint(string(body[i+8:i+12]), 16, 32)
		if err != nil || lo < 0xdc00 || lo > 0xdfff {
			return errBadRequest("request body escapes an unpaired UTF-16 surrogate (\\u%04x)", r)
		}
		i += 11
	}
	return nil
}

// boolParam parses an optional boolean query parameter.
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errBadRequest("query parameter %s=%q is not a boolean", name, v)
	}
	return b, nil
}

// reveal reports whether secrets are to be shown: ?reveal=true by an admin.
// Asking for it with another role is forbidden rather than silently masked.
func reveal(r *http.Request) (bool, error) {
	on, err := boolParam(r, "reveal")
	if err != nil || !on {
		return false, err
	}
	if roleOf(r.Context()) != roleAdmin {
		return false, &apiError{status: http.StatusForbidden, code: CodeForbidden, message: "only the admin token may reveal secrets"}
	}
	return true, nil
}

// actor names who made a change via the API, for updated_by and the audit log.
func actor(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "api@" + host
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if err := s.rdb.Ping(r.Context()).Err(); err != nil {
		return &apiError{status: http.StatusServiceUnavailable, code: CodeUnavailable, message: "redis unavailable", err: err}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
