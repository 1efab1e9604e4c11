// Package statusrec wraps an http.ResponseWriter to remember the status
// code answered, for request metrics (allot serve's and allot proxy's).
package statusrec

import "net/http"

// Recorder remembers the first status written: WriteHeader's code, or 200
// at the first Write. Status is 0 while nothing was written. Unwrap lets
// http.ResponseController reach Flush and the deadlines of the writer
// below.
type Recorder struct {
	http.ResponseWriter
	Status int
}

// WriteHeader records code (the first one) and passes it on.
func (r *Recorder) WriteHeader(code int) {
	if r.Status == 0 {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write records 200 when nothing was written before, and passes b on.
func (r *Recorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush flushes the writer below when it can.
func (r *Recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap is the writer below.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
