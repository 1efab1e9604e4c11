package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// sseBatch is how many events one read of the log returns at most.
const sseBatch = 100

var streamIDPattern = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

// events streams the event log as Server-Sent Events: "id:" is the stream
// entry ID, "event:" the type, "data:" the JSON. It starts after the
// Last-Event-ID header (or ?after=; "0" = from the start of the kept log) and
// otherwise with new events only. Pub/sub nudges wake it, so it holds no
// Redis connection while idle; a comment line goes out every 15 s.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = r.URL.Query().Get("after")
	}
	ctx := r.Context()
	if after == "" || after == "$" {
		last, err := s.lastEventID(ctx)
		if err != nil {
			return err
		}
		after = last
	} else if !validStreamID(after) {
		return errBadRequest("event ID %s: want a stream ID like 1712345678901-0", quoteHeader(after))
	}
	// Each token class has its own slots: read-token streams cannot shut
	// the admin out.
	release, ok := s.streams.take(roleOf(ctx))
	if !ok {
		return errFull("event streams", s.streams.size(), time.Second)
	}
	defer release()
	wake := s.changed.wait()
	first, err := s.reg.Events(ctx, after, sseBatch, 0)
	if err != nil {
		return err
	}

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's write timeout
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n: allot events\n\n"); err != nil {
		return nil
	}

	ping := time.NewTicker(SSEPing)
	defer ping.Stop()
	poll := time.NewTicker(fallbackPoll)
	defer poll.Stop()
	evs := first
	failing := false
	for {
		for _, e := range evs {
			b, _ := json.Marshal(e) // registry.Event: snake_case, at in Unix ms
			if _, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b); err != nil {
				return nil
			}
			after = e.ID
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
		if len(evs) < sseBatch {
			select {
			case <-ctx.Done():
				return nil
			case <-s.ctx.Done():
				return nil
			case <-ping.C:
				if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
					return nil
				}
				evs = nil
				continue
			case <-wake:
			case <-poll.C:
			}
		}
		wake = s.changed.wait()
		evs, err = s.reg.Events(ctx, after, sseBatch, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				s.log.Warn("event stream: read failed; retrying", "err", err)
			}
			failing = true
			evs = nil
			continue
		}
		failing = false
	}
}

// validStreamID reports whether id is a Redis stream ID ("MS" or
// "MS-SEQ") whose parts fit 64 bits: Redis answers anything else with an
// error, which must be the client's 400, not a 500.
func validStreamID(id string) bool {
	if !streamIDPattern.MatchString(id) {
		return false
	}
	ms, seq, _ := strings.Cut(id, "-")
	if _, err := strconv.ParseUint(ms, 10, 64); err != nil {
		return false
	}
	if seq != "" {
		if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
			return false
		}
	}
	return true
}

// lastEventID is the ID of the newest event of the namespace's event
// streams (registry.Registry.LastEventID), so a stream that starts "now" can
// read with non-blocking XREADs.
func (s *Server) lastEventID(ctx context.Context) (string, error) {
	return s.reg.LastEventID(ctx)
}

// DefaultRecentEvents is how many events GET /v1/events/recent answers
// without ?count=.
const DefaultRecentEvents = 100

// recentEvents answers GET /v1/events/recent?count=100&group=NAME: the
// newest events, oldest first, as JSON (the web UI's Events panel on load,
// and its filter by group). count is 1..registry.MaxRecentEvents.
func (s *Server) recentEvents(w http.ResponseWriter, r *http.Request) error {
	count := DefaultRecentEvents
	if v := r.URL.Query().Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errBadRequest("count=%s: want a whole number", quoteHeader(v))
		}
		count = n
	}
	evs, err := s.reg.RecentEvents(r.Context(), count, r.URL.Query().Get("group"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, evs)
	return nil
}
