package redisurl_test

import (
	"fmt"

	"github.com/allot-io/allot/internal/redisurl"
)

func ExampleMask() {
	fmt.Println(redisurl.Mask("rediss://app:s3cret@cache.example:6380/0"))
	// Output: rediss://app:xxxxx@cache.example:6380/0
}

func ExampleOpen() {
	_, err := redisurl.Open("redis://app:s3cret@cache.example:6379?bogus=1")
	fmt.Println(err)
	// Output: redisurl: parse "redis://app:xxxxx@cache.example:6379?bogus=1": redis: unexpected option: bogus
}
