package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/allot-io/allot/heartbeat"
)

// stopTimeout bounds how long a SIGTERMed node may take to leave and exit.
const stopTimeout = 15 * time.Second

// span is a closed time range in Unix nanoseconds.
type span struct{ from, to int64 }

// event is one thing the harness did or saw, kept for the history a failure
// prints.
type event struct {
	t      int64
	kind   string // spawn, kill, term, exit, stop, cont, redis-down, redis-up, failover, group ops
	node   string // node incarnation ("n07#2") or group name
	detail string
}

// proc is one incarnation of a node process.
type proc struct {
	id      string // node ID
	inc     int    // incarnation of that ID, from 1
	report  string // ALLOT_REPORT path
	errPath string // stderr file
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited

	mu      sync.Mutex
	spawned int64
	ended   int64  // exit observed (0 while running)
	killed  int64  // SIGKILL sent and returned (0 if never)
	termed  int64  // SIGTERM sent (0 if never)
	waitErr error  // from cmd.Wait
	stops   []span // SIGSTOP..SIGCONT, to == 0 while stopped
	// lastBeat is the node's last beat as Redis stored it when it was
	// kill -9ed (Unix ns of server time; 0 if unknown).
	lastBeat int64
}

func (p *proc) name() string { return fmt.Sprintf("%s#%d", p.id, p.inc) }

// end is when the process stopped being able to use anything: SIGKILL
// return, else its observed exit; 0 while it runs.
func (p *proc) end() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed != 0 {
		return p.killed
	}
	return p.ended
}

// harness runs the node processes of one pool and records what it did.
type harness struct {
	t        testing.TB
	dir      string
	redisURL string
	ns       string
	hb       heartbeat.Config
	start    time.Time

	mu      sync.Mutex
	procs   map[string]*proc // live incarnation by node ID
	all     []*proc
	incs    map[string]int
	events  []event
	outages []span // invariant 2 suspended: Redis unreachable, cold start (to == 0 while open)
}

func newHarness(t testing.TB, redisURL, ns string, hb heartbeat.Config) *harness {
	dir, err := os.MkdirTemp("", "allot-e2e-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, dir: dir, redisURL: redisURL, ns: ns, hb: hb, start: time.Now(),
		procs: make(map[string]*proc), incs: make(map[string]int),
	}
	t.Cleanup(func() {
		h.killAll()
		if t.Failed() {
			t.Logf("node reports, stdout and stderr kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return h
}

func now() int64 { return time.Now().UnixNano() }

func (h *harness) note(kind, node, detail string) {
	h.mu.Lock()
	h.events = append(h.events, event{t: now(), kind: kind, node: node, detail: detail})
	h.mu.Unlock()
}

// rel formats a Unix-nano time relative to the harness start.
func (h *harness) rel(t int64) string {
	return fmt.Sprintf("%8.3fs", time.Duration(t-h.start.UnixNano()).Seconds())
}

// ipOf gives every node ID a stable address for the allocator's IP hash.
func ipOf(id string) string {
	var sum uint32
	for _, c := range id {
		sum = sum*31 + uint32(c)
	}
	return fmt.Sprintf("10.%d.%d.%d", 1+sum%200, (sum>>8)%250, 1+(sum>>16)%250)
}

// spawn starts a new incarnation of node id. It does not wait for it to join.
func (h *harness) spawn(id string) *proc {
	h.t.Helper()
	h.mu.Lock()
	if old := h.procs[id]; old != nil && old.end() == 0 {
		h.mu.Unlock()
		h.t.Fatalf("e2e: spawn %s: previous incarnation still running", id)
	}
	h.incs[id]++
	p := &proc{id: id, inc: h.incs[id], done: make(chan struct{})}
	h.mu.Unlock()

	base := filepath.Join(h.dir, fmt.Sprintf("%s-%d", id, p.inc))
	p.report, p.errPath = base+".jsonl", base+".stderr"
	stdout, err := os.Create(base + ".stdout")
	if err != nil {
		h.t.Fatal(err)
	}
	stderr, err := os.Create(p.errPath)
	if err != nil {
		h.t.Fatal(err)
	}
	p.cmd = exec.Command(nodeBin)
	p.cmd.Env = append(cleanEnv(),
		"ALLOT_REDIS_URL="+h.redisURL,
		"ALLOT_NAMESPACE="+h.ns,
		"ALLOT_NODE_ID="+id,
		"ALLOT_NODE_IP="+ipOf(id),
		"ALLOT_CACHE_DIR="+filepath.Join(h.dir, "cache"),
		"ALLOT_HEARTBEAT_INTERVAL="+h.hb.Interval.String(),
		"ALLOT_HEARTBEAT_TTL="+h.hb.TTL.String(),
		"ALLOT_REPORT="+p.report,
	)
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.spawned = now()
	if err := p.cmd.Start(); err != nil {
		h.t.Fatalf("e2e: start node %s: %v", id, err)
	}
	go func() {
		err := p.cmd.Wait()
		_ = stdout.Close()
		_ = stderr.Close()
		p.mu.Lock()
		p.ended, p.waitErr = now(), err
		p.mu.Unlock()
		close(p.done)
	}()
	h.mu.Lock()
	h.procs[id] = p
	h.all = append(h.all, p)
	h.mu.Unlock()
	h.note("spawn", p.name(), fmt.Sprintf("pid %d ip %s", p.cmd.Process.Pid, ipOf(id)))
	return p
}

// cleanEnv is the test's environment without any ALLOT_ variable.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ALLOT_") {
			env = append(env, kv)
		}
	}
	return env
}

// live returns the running incarnations (stopped ones included), by ID.
func (h *harness) live() []*proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*proc
	for _, p := range h.procs {
		if p.end() == 0 {
			out = append(out, p)
		}
	}
	sortProcs(out)
	return out
}

// kill9 SIGKILLs p and waits for it to be gone.
func (h *harness) kill9(p *proc) {
	h.t.Helper()
	p.mu.Lock()
	stopped := len(p.stops) > 0 && p.stops[len(p.stops)-1].to == 0
	p.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		h.t.Fatalf("e2e: kill -9 %s: %v", p.name(), err)
	}
	t := now()
	p.mu.Lock()
	p.killed = t
	if stopped {
		p.stops[len(p.stops)-1].to = t
	}
	p.mu.Unlock()
	h.note("kill", p.name(), "SIGKILL")
	<-p.done
}

// term SIGTERMs p and waits for it to exit; the exit code must be 0.
func (h *harness) term(p *proc) {
	h.t.Helper()
	p.mu.Lock()
	p.termed = now()
	p.mu.Unlock()
	h.note("term", p.name(), "SIGTERM")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatalf("e2e: SIGTERM %s: %v", p.name(), err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		h.t.Fatalf("e2e: %s did not exit within %v of SIGTERM; stderr:\n%s", p.name(), stopTimeout, tail(p.errPath, 2000))
	}
	p.mu.Lock()
	err := p.waitErr
	p.mu.Unlock()
	h.note("exit", p.name(), fmt.Sprintf("err=%v", err))
	if err != nil {
		h.t.Fatalf("e2e: %s exited with %v after SIGTERM, want exit code 0; stderr:\n%s", p.name(), err, tail(p.errPath, 2000))
	}
}

// stop freezes p (SIGSTOP), as a long GC pause or a suspended VM would.
func (h *harness) stop(p *proc) {
	h.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		h.t.Fatalf("e2e: SIGSTOP %s: %v", p.name(), err)
	}
	t := now()
	p.mu.Lock()
	p.stops = append(p.stops, span{from: t})
	p.mu.Unlock()
	h.note("stop", p.name(), "SIGSTOP")
}

// cont resumes a stopped p (SIGCONT).
func (h *harness) cont(p *proc) {
	h.t.Helper()
	t := now()
	p.mu.Lock()
	p.stops[len(p.stops)-1].to = t
	p.mu.Unlock()
	h.note("cont", p.name(), "SIGCONT")
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		h.t.Fatalf("e2e: SIGCONT %s: %v", p.name(), err)
	}
}

// outage marks Redis unreachable for the pool from now until the returned
// func is called: invariant 2 is suspended meanwhile (plus a grace).
func (h *harness) outage(what string) (over func()) { return h.exempt("redis-down", "redis-up", what) }

// exempt suspends invariant 2 from now until the returned func is called
// (plus a grace), noting begin and end as events.
func (h *harness) exempt(begin, end, what string) (over func()) {
	h.mu.Lock()
	h.outages = append(h.outages, span{from: now()})
	i := len(h.outages) - 1
	h.mu.Unlock()
	h.note(begin, what, "")
	return func() {
		h.mu.Lock()
		h.outages[i].to = now()
		h.mu.Unlock()
		h.note(end, what, "")
	}
}

// killAll SIGKILLs whatever still runs (test cleanup).
func (h *harness) killAll() {
	h.mu.Lock()
	all := append([]*proc(nil), h.all...)
	h.mu.Unlock()
	for _, p := range all {
		if p.end() == 0 {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
}

// termAll SIGTERMs every running node concurrently and checks each exits 0.
func (h *harness) termAll() {
	h.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 1024)
	for _, p := range h.live() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.mu.Lock()
			p.termed = now()
			p.mu.Unlock()
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				errs <- fmt.Errorf("%s did not exit within %v of SIGTERM", p.name(), stopTimeout)
				return
			}
			p.mu.Lock()
			err := p.waitErr
			p.mu.Unlock()
			if err != nil {
				errs <- fmt.Errorf("%s exited with %v after SIGTERM; stderr:\n%s", p.name(), err, tail(p.errPath, 2000))
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		h.t.Fatalf("e2e: stopping the pool: %v", err)
	}
}

// crashes lists every process whose stderr shows a panic, a fatal runtime
// error or a data race.
func (h *harness) crashes() []string {
	h.mu.Lock()
	all := append([]*proc(nil), h.all...)
	h.mu.Unlock()
	var out []string
	for _, p := range all {
		b, err := os.ReadFile(p.errPath)
		if err != nil {
			continue
		}
		s := string(b)
		for _, bad := range []string{"panic:", "fatal error:", "DATA RACE", "SIGSEGV"} {
			if strings.Contains(s, bad) {
				out = append(out, fmt.Sprintf("%s: %q in stderr:\n%s", p.name(), bad, tail(p.errPath, 4000)))
				break
			}
		}
	}
	return out
}

// tail returns the last n bytes of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func sortProcs(ps []*proc) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && (ps[j].id < ps[j-1].id || (ps[j].id == ps[j-1].id && ps[j].inc < ps[j-1].inc)); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}
