package heartbeat_test

import (
	"fmt"
	"time"

	"github.com/allot-io/allot/heartbeat"
)

func ExampleConfig_Validate() {
	fmt.Println(heartbeat.DefaultConfig().Validate())
	fmt.Println(heartbeat.Config{Interval: time.Second, TTL: 2 * time.Second}.Validate())
	// Output:
	// <nil>
	// heartbeat: invalid config: ttl 2s must be >= 3 × interval 1s (= 3s)
}
