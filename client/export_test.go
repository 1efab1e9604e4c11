package client

// sharedRedisURL is the URL of the redis-server TestMain starts for the
// runnable examples (they get no testing.TB).
var sharedRedisURL string

// SharedRedisURL exposes sharedRedisURL to package client_test.
func SharedRedisURL() string { return sharedRedisURL }
