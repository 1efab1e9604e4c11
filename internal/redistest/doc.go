// Package redistest starts real redis-server processes for tests.
//
// Every server listens on 127.0.0.1 on a free port (never 6379), keeps its
// files in its own t.TempDir(), and is killed (whole process group) when the
// test ends. Readiness is detected by polling the server, never by sleeping.
//
//	s := redistest.Start(t, redistest.WithAOF())
//	rdb := s.Client(t)
//
//	c := redistest.StartCluster(t)        // 3 masters, all 16384 slots
//	sn := redistest.StartSentinel(t)      // master + one sentinel ("mymaster")
//
// Each helper's URL() is the connection string a user would pass to allot
// (--redis / ALLOT_REDIS_URL). A missing redis-server binary fails the test
// with one line telling how to install it.
package redistest
