// Command llmproxy is an OpenAI-compatible forwarder for POST
// /v1/chat/completions that shares each LLM key's request and token limits
// with every other node holding the key. Each request:
//
//  1. acquires a lease (client.Acquire) for 1 request + an estimate of the
//     tokens (prompt characters / 4, plus max_tokens or, without it, as much
//     again) from a group allot assigned to this node with room for it (its
//     config holds api_key) — 429 with Retry-After when every held key is
//     used up, 413 when the estimate exceeds every key's burst (it could
//     never fit);
//  3. forwards the request to UPSTREAM_URL with "Authorization: Bearer
//     <api_key>" (streamed requests ask for the final usage chunk);
//  4. settles the lease with usage.total_tokens from the answer (the
//     last chunk of a streamed one), so the shared budget holds what was
//     really used; an answer without usage keeps the estimate, an error
//     answer gives it all back.
//
// Give the group a quota like "500/m, 90000 tokens/m" (allot group update
// NAME --quota ...). The key is never logged.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/allot-io/allot/client"
)

// maxBody bounds a request and a non-streamed answer.
const maxBody = 8 << 20

func main() {
	os.Exit(run())
}

func run() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	upstream, err := url.Parse(os.Getenv("UPSTREAM_URL"))
	if err != nil || upstream.Scheme == "" || upstream.Host == "" {
		fmt.Fprintln(os.Stderr, "llmproxy: UPSTREAM_URL must be an absolute URL, e.g. https://api.openai.com")
		return 2
	}
	listen := os.Getenv("LISTEN_ADDR")
	if listen == "" {
		listen = "127.0.0.1:8080"
	}
	c, err := client.FromEnv(client.WithLogger(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, "llmproxy:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := c.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "llmproxy:", err)
		return 1
	}
	p := &proxy{c: c, upstream: upstream, http: &http.Client{Timeout: 5 * time.Minute}, log: log}
	srv := &http.Server{Addr: listen, Handler: p.handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", listen, "node", c.NodeID())
	code := 0
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "llmproxy:", err)
		code = 1
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown) // settle in-flight calls before giving the key away
	if err := c.Close(shutdown); err != nil {
		fmt.Fprintln(os.Stderr, "llmproxy: leave:", err)
		code = 1
	}
	return code
}

type proxy struct {
	c        *client.Client
	upstream *url.URL
	http     *http.Client
	log      *slog.Logger
}

func (p *proxy) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", p.chat)
	return mux
}

// chatRequest is the part of a chat completion request the estimate needs.
type chatRequest struct {
	MaxTokens           int64 `json:"max_tokens"`
	MaxCompletionTokens int64 `json:"max_completion_tokens"`
	Stream              bool  `json:"stream"`
	Messages            []struct {
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// usageOf finds usage.total_tokens in an answer or a stream chunk.
type usageOf struct {
	Usage *struct {
		TotalTokens int64 `json:"total_tokens"`
	} `json:"usage"`
}

// estimate is the tokens to reserve: the prompt at ~4 characters a token,
// plus the completion limit asked for, or as much again without one.
func estimate(req chatRequest) int64 {
	var chars int
	for _, m := range req.Messages {
		chars += len(m.Content)
	}
	prompt := int64(chars+3) / 4
	completion := max(req.MaxTokens, req.MaxCompletionTokens)
	if completion <= 0 {
		completion = prompt
	}
	return max(prompt+completion, 1)
}

func (p *proxy) chat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "request body is not a chat completion request", http.StatusBadRequest)
		return
	}
	if req.Stream {
		// Ask for the final usage chunk, so the stream can be settled.
		if body, err = withStreamUsage(body); err != nil {
			http.Error(w, "request body is not a JSON object", http.StatusBadRequest)
			return
		}
	}
	// One lease per call: a held key with room for the estimate (the one
	// whose limits had the most left first).
	est := estimate(req)
	lease, err := p.c.Acquire(r.Context(), est)
	var rl *client.RateLimitError
	switch {
	case errors.As(err, &rl):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.RetryAfter.Seconds()))))
		http.Error(w, "limit "+rl.Limit+" used up", http.StatusTooManyRequests)
		return
	case errors.Is(err, client.ErrCostTooLarge):
		http.Error(w, "request too large for the key's token limit", http.StatusRequestEntityTooLarge)
		return
	case errors.Is(err, client.ErrNothingHeld):
		http.Error(w, "no key assigned (standby)", http.StatusServiceUnavailable)
		return
	case err != nil:
		p.log.Warn("acquire failed", "err", err)
		http.Error(w, "limiter unavailable", http.StatusServiceUnavailable)
		return
	}
	group := lease.Group()
	key, ok := lease.Config("api_key")
	if !ok {
		p.log.Error("group has no api_key", "group", group)
		http.Error(w, "misconfigured group", http.StatusInternalServerError)
		return
	}
	used := est // kept when the answer says nothing
	defer func() {
		// Settle even when the caller went away: the tokens were spent.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		if err := lease.Settle(ctx, used); err != nil {
			p.log.Warn("settle failed", "group", group, "err", err)
		}
	}()

	target := *p.upstream
	target.Path = strings.TrimSuffix(p.upstream.Path, "/") + "/v1/chat/completions"
	up, err := http.NewRequestWithContext(r.Context(), http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		used = 0
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Authorization", "Bearer "+key)
	resp, err := p.http.Do(up)
	if err != nil {
		used = 0
		p.log.Warn("upstream call failed", "group", group, "err", err) // err never contains the header
		http.Error(w, "upstream unavailable", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	if resp.StatusCode/100 != 2 {
		used = 0 // refused or failed: no tokens spent
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		w.WriteHeader(resp.StatusCode)
		if n, ok := p.relayStream(w, resp.Body); ok {
			used = n
		}
		return
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		http.Error(w, "upstream answer unreadable", http.StatusBadGateway)
		return
	}
	var u usageOf
	if json.Unmarshal(answer, &u) == nil && u.Usage != nil {
		used = u.Usage.TotalTokens
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// relayStream copies a server-sent event stream line by line, flushing
// each event, and returns the total_tokens of the chunk that carries usage.
func (p *proxy) relayStream(w http.ResponseWriter, body io.Reader) (int64, bool) {
	flush := func() {}
	if f, ok := w.(http.Flusher); ok {
		flush = f.Flush
	}
	var total int64
	found := false
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxBody)
	for sc.Scan() {
		line := sc.Bytes()
		if data, ok := bytes.CutPrefix(line, []byte("data: ")); ok && !bytes.Equal(data, []byte("[DONE]")) {
			var u usageOf
			if json.Unmarshal(data, &u) == nil && u.Usage != nil {
				total, found = u.Usage.TotalTokens, true
			}
		}
		_, _ = w.Write(line)
		_, _ = w.Write([]byte("\n"))
		if len(line) == 0 {
			flush()
		}
	}
	flush()
	return total, found
}

// withStreamUsage sets stream_options.include_usage in a request body.
func withStreamUsage(body []byte) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	so, _ := m["stream_options"].(map[string]any)
	if so == nil {
		so = map[string]any{}
	}
	so["include_usage"] = true
	m["stream_options"] = so
	return json.Marshal(m)
}
