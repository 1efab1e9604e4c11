package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-io/allot/quota"
)

func TestEstimate(t *testing.T) {
	tests := []struct {
		name, path, body string
		want             int64
	}{
		// 40 bytes: 10 tokens of prompt.
		{"max_tokens", "/v1/chat/completions", `{"max_tokens":300,"messages":[1,2,3,4]}`, 10 + 300},
		{"max_completion_tokens wins when larger", "/v1/chat/completions", `{"max_tokens":30,"max_completion_tokens":500,"m":1}`, 13 + 500},
		{"max_output_tokens (Responses)", "/v1/responses", `{"max_output_tokens":64,"input":"hello wor"}`, 11 + 64},
		{"n choices", "/v1/chat/completions", `{"max_tokens":100,"n":3,"xxxxxxxxx":1}`, 10 + 300},
		{"no limit: as much again", "/v1/chat/completions", `{"messages":[{"content":"hi"}]}`, 8 + 8},
		{"embeddings: no completion", "/v1/embeddings", `{"input":"hello world and more text"}`, 10},
		{"absurd max_tokens bounded", "/v1/chat/completions", `{"max_tokens":1e30}`, quota.MaxCost},
		{"negative ignored", "/v1/chat/completions", `{"max_tokens":-5,"abcdefghij":1}`, 8 + 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := prepareOpenAI(tt.path, []byte(tt.body))
			assert.Equal(t, tt.want, c.tokens)
			assert.Equal(t, tt.body, string(c.body), "not a stream: the body goes as it is")
		})
	}
	for _, body := range []string{``, `not json`, `[1,2]`, `"text"`, `null`} {
		assert.Zero(t, prepareOpenAI("/v1/chat/completions", []byte(body)).tokens, "%q: one request, no tokens", body)
	}
}

func TestPrepareStream(t *testing.T) {
	decode := func(b []byte) map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		return m
	}
	// Not asked: asked for the proxy, other options and fields kept,
	// strings not HTML-escaped.
	c := prepareOpenAI("/v1/chat/completions", []byte(`{"stream":true,"stream_options":{"include_obfuscation":false},"messages":[{"content":"<b>&"}],"seed":12345678901234567}`))
	assert.True(t, c.stripUsage)
	assert.Equal(t, map[string]any{"include_obfuscation": false, "include_usage": true}, decode(c.body)["stream_options"])
	assert.Contains(t, string(c.body), `"<b>&"`)
	assert.Contains(t, string(c.body), `12345678901234567`, "numbers kept as written")

	c = prepareOpenAI("/v1/completions", []byte(`{"stream":true,"prompt":"x"}`))
	assert.True(t, c.stripUsage, "text completions too")

	for _, tt := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"stream":true,"stream_options":{"include_usage":true}}`}, // asked: kept
		{"/v1/chat/completions", `{"stream":false}`},
		{"/v1/responses", `{"stream":true}`}, // no stream_options there
		{"/v1/chat/completions", `{"stream":true,"stream_options":"bad"}`},
	} {
		c := prepareOpenAI(tt.path, []byte(tt.body))
		assert.False(t, c.stripUsage, tt.body)
		assert.Equal(t, tt.body, string(c.body), "%s %s: as it is", tt.path, tt.body)
	}
}

func TestParseUsage(t *testing.T) {
	for _, tt := range []struct {
		body  string
		want  int64
		found bool
	}{
		{`{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, 7, true},
		{`{"usage":{"input_tokens":3,"output_tokens":5}}`, 8, true},
		{`{"response":{"usage":{"total_tokens":9}}}`, 9, true},
		{`{"usage":{"total_tokens":-4}}`, 0, true},
		{`{"usage":{"total_tokens":1e15}}`, quota.MaxCost, true},
		{`{"usage":null}`, 0, false},
		{`{"choices":[]}`, 0, false},
		{`garbage "usage"`, 0, false},
	} {
		n, found := parseUsage([]byte(tt.body))
		assert.Equal(t, tt.found, found, tt.body)
		assert.Equal(t, tt.want, n, tt.body)
	}
}

// TestSSERelay: events are relayed whole and flushed one by one; the
// usage chunk is read, and dropped only when strip is set; CRLF lines,
// multi-line data and comments pass; a line past the bound ends the
// parsing and the rest is copied as it is.
func TestSSERelay(t *testing.T) {
	const stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n" +
		": keep-alive\n\n" +
		"event: x\r\ndata: {\"choices\":\r\ndata: [{\"delta\":{}}]}\r\n\r\n" +
		"data: {\"choices\":[],\"usage\":{\"total_tokens\":42}}\n\n" +
		"data: [DONE]\n\n"
	for _, strip := range []bool{false, true} {
		var out bytes.Buffer
		flushes := 0
		s := &sseRelay{w: &out, flush: func() { flushes++ }, strip: strip, maxLine: 1 << 10}
		readErr, writeErr := s.run(strings.NewReader(stream))
		require.NoError(t, readErr)
		require.NoError(t, writeErr)
		assert.True(t, s.found)
		assert.Equal(t, int64(42), s.tokens)
		want := stream
		if strip {
			want = strings.Replace(stream, "data: {\"choices\":[],\"usage\":{\"total_tokens\":42}}\n\n", "", 1)
		}
		assert.Equal(t, want, out.String(), "strip=%v", strip)
		assert.Equal(t, strings.Count(want, "\n\n")+1, flushes, "one flush per event")
	}

	// A usage chunk with choices keeps them (other providers): never dropped.
	var out bytes.Buffer
	s := &sseRelay{w: &out, flush: func() {}, strip: true, maxLine: 1 << 10}
	in := "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"total_tokens\":5}}\n\n"
	_, _ = s.run(strings.NewReader(in))
	assert.Equal(t, in, out.String())
	assert.Equal(t, int64(5), s.tokens)

	// Past the line bound: copied as it is.
	out.Reset()
	long := "data: " + strings.Repeat("x", 3000) + "\n\ndata: {\"choices\":[],\"usage\":{\"total_tokens\":1}}\n\n"
	s = &sseRelay{w: &out, flush: func() {}, strip: true, maxLine: 1 << 10}
	readErr, _ := s.run(strings.NewReader(long))
	require.NoError(t, readErr)
	assert.Equal(t, long, out.String())

	// An upstream that cuts the stream: its error, the events before it relayed.
	out.Reset()
	s = &sseRelay{w: &out, flush: func() {}, maxLine: 1 << 10}
	cut := errors.New("cut")
	readErr, _ = s.run(io.MultiReader(strings.NewReader("data: 1\n\ndata: 2"), &failing{cut}))
	assert.ErrorIs(t, readErr, cut)
	assert.Equal(t, "data: 1\n\ndata: 2", out.String())
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }

func TestTemplate(t *testing.T) {
	cfg := map[string]string{"api_key": "sk-1", "org": "o"}
	get := func(k string) (string, bool) {
		v, ok := cfg[k]
		return v, ok
	}
	tm, err := parseTemplate("Bearer {api_key} {{literal}} {org}")
	require.NoError(t, err)
	assert.Equal(t, []string{"api_key", "org"}, tm.keys())
	v, missing := tm.fill(get)
	assert.Equal(t, "Bearer sk-1 {literal} o", v)
	assert.Empty(t, missing)
	tm, err = parseTemplate("{api_key}{nope}")
	require.NoError(t, err)
	_, missing = tm.fill(get)
	assert.Equal(t, "nope", missing)

	h, err := parseAuthHeader("x-api-key:{api_key}")
	require.NoError(t, err)
	assert.Equal(t, "X-Api-Key", h.name)
	assert.False(t, validHeaderValue("a\r\nb"))
	assert.True(t, validHeaderValue("Bearer a\tb"))
}
