// Package redisurl opens a go-redis client from the one connection string a
// user gives allot (--redis / ALLOT_REDIS_URL):
//
//	redis://[user:pass@]host:port[/db]                      standalone
//	redis://host1:port?addr=host2:port&addr=host3:port      Redis Cluster (one or more addr=)
//	redis://sentinel:26379?master_name=mymaster[&addr=…]    Sentinel
//	rediss://…                                              any of the above over TLS
//
// Besides go-redis's own query parameters it accepts ca_file=/path/ca.pem, a
// PEM bundle trusted for TLS. For Sentinel, go-redis's rules apply: the URL's
// user:pass authenticates to the sentinels, username= / password= in the
// query to the master.
//
// Mask hides the password before a URL is shown or logged; every error of
// this package already carries the masked URL.
package redisurl
