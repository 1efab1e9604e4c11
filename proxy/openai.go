package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/allot-io/allot/quota"
)

// call is one request as the proxy forwards it.
type call struct {
	body []byte // the body to send (WithOpenAI may have added stream_options)
	// tokens is the estimate the lease reserves (0 without WithOpenAI).
	tokens int64
	// stripUsage: the proxy asked for the stream's usage chunk itself, so
	// it drops that chunk (choices: []) before the caller sees it.
	stripUsage bool
}

// maxChoices bounds the n of a request in the estimate (OpenAI allows 128).
const maxChoices = 128

// bytesPerToken is the prompt estimate's rate: about 4 bytes of English
// text (and JSON) per token, as OpenAI's own rule of thumb.
const bytesPerToken = 4

// prepareOpenAI reads what the estimate and the stream need from an
// OpenAI-style request body, and asks for the usage chunk of a streamed
// chat or text completion the caller did not ask it for. A body that is
// not a JSON object costs one request and no tokens, and goes as it is.
func prepareOpenAI(path string, body []byte) call {
	c := call{body: body}
	var doc map[string]json.RawMessage
	if len(body) == 0 || json.Unmarshal(body, &doc) != nil || doc == nil {
		return c
	}
	c.tokens = estimate(path, len(body), doc)
	if !jsonBool(doc["stream"]) || !strings.HasSuffix(strings.TrimSuffix(path, "/"), "/completions") {
		return c
	}
	var so map[string]json.RawMessage
	if raw, ok := doc["stream_options"]; ok && json.Unmarshal(raw, &so) != nil {
		return c // not an object: the upstream will say so
	}
	if jsonBool(so["include_usage"]) {
		return c // the caller asked for it: it gets it, and so does the settle
	}
	if so == nil {
		so = map[string]json.RawMessage{}
	}
	so["include_usage"] = json.RawMessage("true")
	raw, err := marshal(so)
	if err != nil {
		return c
	}
	doc["stream_options"] = raw
	if b, err := marshal(doc); err == nil {
		c.body, c.stripUsage = b, true
	}
	return c
}

// estimate is the tokens a call reserves before it is made: the prompt at
// bytesPerToken of the body, plus the completion limit the request asks
// for (the largest of max_tokens, max_completion_tokens and
// max_output_tokens) times n, or, without a limit, as much again as the
// prompt; an embeddings call has no completion. Settling corrects it.
func estimate(path string, size int, doc map[string]json.RawMessage) int64 {
	prompt := int64((size + bytesPerToken - 1) / bytesPerToken)
	completion := max(jsonInt(doc["max_tokens"]), jsonInt(doc["max_completion_tokens"]), jsonInt(doc["max_output_tokens"]))
	switch {
	case strings.HasSuffix(strings.TrimSuffix(path, "/"), "/embeddings"):
		completion = 0
	case completion <= 0:
		completion = prompt
	}
	n := min(max(jsonInt(doc["n"]), 1), maxChoices)
	return min(prompt+min(completion, quota.MaxCost)*n, quota.MaxCost)
}

// marshal encodes v without HTML escapes, so strings go upstream as the
// caller wrote them.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func jsonBool(raw json.RawMessage) bool {
	var b bool
	return raw != nil && json.Unmarshal(raw, &b) == nil && b
}

// jsonInt reads a whole number (0 when absent, not a number, or negative).
func jsonInt(raw json.RawMessage) int64 {
	var f float64
	if raw == nil || json.Unmarshal(raw, &f) != nil || f <= 0 {
		return 0
	}
	return int64(min(f, quota.MaxCost))
}

// usage is the usage object of an answer or a stream chunk: chat and text
// completions and embeddings say prompt/completion/total_tokens, the
// Responses API input/output/total_tokens.
type usage struct {
	TotalTokens      *float64 `json:"total_tokens"`
	PromptTokens     float64  `json:"prompt_tokens"`
	CompletionTokens float64  `json:"completion_tokens"`
	InputTokens      float64  `json:"input_tokens"`
	OutputTokens     float64  `json:"output_tokens"`
}

// total is the tokens the usage counts, within [0, quota.MaxCost]: an
// upstream's figure is bounded before it reaches the limiter.
func (u *usage) total() int64 {
	n := u.PromptTokens + u.CompletionTokens + u.InputTokens + u.OutputTokens
	if u.TotalTokens != nil {
		n = *u.TotalTokens
	}
	return int64(min(max(n, 0), quota.MaxCost))
}

// answer is what the proxy reads of an answer or a stream chunk.
type answer struct {
	// Choices is nil when absent (or null), empty for the usage chunk.
	Choices *[]json.RawMessage `json:"choices"`
	Usage   *usage             `json:"usage"`
	// Response carries the usage of the Responses API's
	// response.completed event.
	Response *struct {
		Usage *usage `json:"usage"`
	} `json:"response"`
}

// usageOf returns the tokens an answer or chunk reports, and whether it
// reports any.
func (a *answer) usageOf() (int64, bool) {
	switch {
	case a.Usage != nil:
		return a.Usage.total(), true
	case a.Response != nil && a.Response.Usage != nil:
		return a.Response.Usage.total(), true
	}
	return 0, false
}

// usageOnly reports whether a chunk is the one include_usage adds: usage
// and an empty choices list, which breaks a caller's chunk.choices[0].
func (a *answer) usageOnly() bool {
	return a.Usage != nil && a.Choices != nil && len(*a.Choices) == 0
}

// parseUsage reads the usage of a whole (not streamed) answer.
func parseUsage(body []byte) (int64, bool) {
	var a answer
	if !bytes.Contains(body, []byte(`"usage"`)) || json.Unmarshal(body, &a) != nil {
		return 0, false
	}
	return a.usageOf()
}

// sseRelay copies a server-sent event stream event by event, flushing
// each, reading the usage its chunks report and dropping the usage chunk
// when strip is set.
type sseRelay struct {
	w     io.Writer
	flush func()
	strip bool
	// maxLine bounds one line; past it the rest is copied as it is.
	maxLine int

	tokens int64 // the last usage seen
	found  bool
}

// errLineTooLong stops the parsing of a stream whose line passes maxLine.
var errLineTooLong = errors.New("proxy: stream line too long")

// run relays body to the end. readErr is the upstream's (a stream cut
// short), writeErr the caller's (gone).
func (s *sseRelay) run(body io.Reader) (readErr, writeErr error) {
	br := bufio.NewReaderSize(body, 32<<10)
	var ev, line []byte
	for {
		var err error
		line, err = readLine(br, line[:0], s.maxLine)
		ev = append(ev, line...)
		if len(line) > 0 && isBlank(line) {
			if werr := s.emit(ev); werr != nil {
				return nil, werr
			}
			ev = ev[:0]
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, errLineTooLong):
			// Not a stream this proxy can read: the rest goes as it is.
			if _, werr := s.w.Write(ev); werr != nil {
				return nil, werr
			}
			return copyFlushing(s.w, br, s.flush, true)
		}
		if len(ev) > 0 {
			if werr := s.emit(ev); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		return err, nil
	}
}

// emit writes one event (its lines and the blank line ending it) unless
// it is a usage chunk to drop, and flushes it.
func (s *sseRelay) emit(ev []byte) error {
	if data := eventData(ev); bytes.Contains(data, []byte(`"usage"`)) {
		var a answer
		if json.Unmarshal(data, &a) == nil {
			if n, ok := a.usageOf(); ok {
				s.tokens, s.found = n, true
			}
			if s.strip && a.usageOnly() {
				return nil
			}
		}
	}
	if _, err := s.w.Write(ev); err != nil {
		return err
	}
	s.flush()
	return nil
}

// eventData joins the data lines of an event, as an SSE client does.
func eventData(ev []byte) []byte {
	var data []byte
	n := 0
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		v, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		v = bytes.TrimPrefix(v, []byte(" "))
		if n > 0 {
			data = append(data, '\n')
		}
		data = append(data, v...)
		n++
	}
	return data
}

// isBlank reports whether line ends an event ("\n" or "\r\n").
func isBlank(line []byte) bool {
	return len(bytes.TrimRight(line, "\r\n")) == 0
}

// readLine appends the next line of br to buf, with its "\n" (the last
// line may lack one). A line longer than max is returned, cut, with
// errLineTooLong.
func readLine(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > max {
			return buf, errLineTooLong
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return buf, err
		}
	}
}
