package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/allot-io/allot/client"
)

func ExampleAssignment_Group() {
	a := client.Assignment{Epoch: 12, Groups: []client.Group{
		{Name: "alpha", Version: 3, Config: map[string]string{"endpoint": "https://a.example"}, Share: 0.5, Quota: "600/m"},
		{Name: "beta", Version: 1, Config: map[string]string{"endpoint": "https://b.example"}, Share: 1},
	}}
	if g, ok := a.Group("alpha"); ok {
		fmt.Println(g.Config["endpoint"], g.Share, g.Quota)
	}
	_, ok := a.Group("gamma")
	fmt.Println(ok)
	// Output:
	// https://a.example 0.5 600/m
	// false
}

func ExampleAssignment_String() {
	a := client.Assignment{Epoch: 12, Groups: []client.Group{
		{Name: "alpha", Version: 3, Config: map[string]string{"api_key": "never printed"}},
		{Name: "beta", Version: 1},
	}}
	fmt.Println(a)
	fmt.Println(client.Assignment{Epoch: 13})
	// Output:
	// epoch=12 groups=alpha@v3,beta@v1
	// epoch=13 groups=
}

func ExampleRateLimitError() {
	var err error = &client.RateLimitError{Group: "alpha", Limit: "600/m", RetryAfter: 250 * time.Millisecond}
	var rl *client.RateLimitError
	if errors.As(err, &rl) {
		fmt.Println(errors.Is(err, client.ErrRateLimited), rl.Group, rl.Limit, rl.RetryAfter)
	}
	// Output:
	// true alpha 600/m 250ms
}

// ExampleClient_Reserve reserves an estimate of tokens before an LLM call and
// settles with what the answer used. (Compiled, not run: it needs Redis.)
func ExampleClient_Reserve() {
	ctx := context.Background()
	c, err := client.FromEnv()
	if err != nil {
		panic(err)
	}
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	defer c.Close(context.Background())

	r, err := c.Reserve(ctx, "openai-1", 1200) // 1 request + 1200 tokens from every limit
	var rl *client.RateLimitError
	switch {
	case errors.As(err, &rl):
		fmt.Println("limit", rl.Limit, "used up; retry after", rl.RetryAfter)
		return
	case errors.Is(err, client.ErrCostTooLarge):
		fmt.Println("never fits: split the call")
		return
	case err != nil:
		panic(err)
	}
	used := int64(850) // usage.total_tokens of the answer
	if err := r.Settle(ctx, used); err != nil {
		fmt.Println("settle:", err)
	}
}

// ExampleClient_Acquire makes one upstream call per lease: the key of a held
// group with room, the tokens settled from the answer, and the answer
// reported so a 429 or a revoked key reaches every holder. (Compiled, not
// run: it needs Redis and an upstream.)
func ExampleClient_Acquire() {
	ctx := context.Background()
	c, err := client.FromEnv()
	if err != nil {
		panic(err)
	}
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	defer c.Close(context.Background())

	lease, err := c.AcquireWait(ctx, 1200) // waits the shortest RetryAfter of the held groups
	if err != nil {
		panic(err)
	}
	key, _ := lease.Config("api_key")
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://api.example/v1/chat", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	_ = lease.Observe(ctx, resp, err)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	_ = lease.Settle(ctx, 850) // usage.total_tokens of the answer
}
