package client_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/allot-io/allot/client"
	"github.com/allot-io/allot/registry"
)

// The whole life of a node: an operator adds a group, the node starts,
// reads its config lock-free, follows a change, takes from the group's
// shared quota, and leaves.
func ExampleClient() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opt, err := redis.ParseURL(client.SharedRedisURL()) // e.g. redis://127.0.0.1:6379
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	// The operator's side (allot group add search --set api_key=… --quota 2/s).
	reg := registry.New(rdb, registry.WithNamespace("example"))
	quota := "2/s"
	if _, err := reg.Add(ctx, "search", registry.Change{Set: map[string]string{"api_key": "key-1"}, Quota: &quota}, "ops"); err != nil {
		log.Fatal(err)
	}

	// The node's side.
	c, err := client.New(rdb, client.WithNamespace("example"), client.WithNodeID("node-1"))
	if err != nil {
		log.Fatal(err)
	}
	changes := make(chan string, 8)
	c.OnChange(func(old, new client.Assignment) { // in order, never concurrently
		var gs []string
		for _, g := range new.Groups {
			gs = append(gs, fmt.Sprintf("%s@v%d", g.Name, g.Version))
		}
		changes <- "holds [" + strings.Join(gs, " ") + "]"
	})
	if err := c.Start(ctx); err != nil { // returns once the first assignment is known
		log.Fatal(err)
	}
	fmt.Println(<-changes)
	key, _ := c.Config("api_key") // lock-free, on every request
	fmt.Println("api_key:", key)

	if _, err := reg.Update(ctx, "search", registry.Change{Set: map[string]string{"api_key": "key-2"}}, "ops"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-changes)
	key, _ = c.Config("api_key")
	fmt.Println("api_key:", key)

	fmt.Println("allow:", c.Allow(ctx, "search")) // shared by every holder of the group
	fmt.Println("lease valid:", c.Health().LeaseValid)

	if err := c.Close(ctx); err != nil { // leave: the group moves at once
		log.Fatal(err)
	}
	fmt.Println(<-changes)
	<-c.Done()
	fmt.Println("closed")
	// Output:
	// holds [search@v1]
	// api_key: key-1
	// holds [search@v2]
	// api_key: key-2
	// allow: <nil>
	// lease valid: true
	// holds []
	// closed
}
