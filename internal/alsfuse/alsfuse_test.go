package main

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNewRules(t *testing.T) {
	for _, c := range []struct {
		f  fault
		ok bool
	}{
		{fault{}, true}, // every operation on every path, delay 0
		{fault{Path: "*/diff/*", Op: "lookup", Errno: "EIO"}, true},
		{fault{Path: "sha256:a/info", Op: "*", Errno: "EACCES", DelayMS: 5, After: 2}, true},
		{fault{Op: "statfs", Errno: "ENOENT"}, true},
		{fault{Op: "write"}, false},          // a write is never faulted, it is refused
		{fault{Errno: "EPERM"}, false},       // not an errno a fault can answer
		{fault{Path: "a/[b"}, false},         // a malformed pattern
		{fault{DelayMS: -1}, false},          // negative delay
		{fault{After: -1}, false},            // negative count
		{fault{Op: "Lookup"}, false},         // operations are lower case
		{fault{Errno: "eio"}, false},         // errnos are upper case
		{fault{Path: "\\"}, false},           // a trailing escape
		{fault{Path: "[]a]", Op: ""}, false}, // an empty class
	} {
		_, err := newRules([]fault{c.f})
		if (err == nil) != c.ok {
			t.Errorf("newRules(%+v): %v, want ok=%v", c.f, err, c.ok)
		}
	}
}

func TestBehaviourServe(t *testing.T) {
	for _, c := range []struct {
		faults []fault
		op     string
		real   []syscall.Errno // what the operation itself answers, one call each
		want   []syscall.Errno // what serve answers
	}{
		{nil, "read", []syscall.Errno{0, 0}, []syscall.Errno{0, 0}},
		{
			[]fault{{Path: "e/info", Op: "read", Errno: "EIO"}},
			"read",
			[]syscall.Errno{0},
			[]syscall.Errno{syscall.EIO},
		},
		{
			[]fault{{Path: "e/info", Op: "open", Errno: "EIO"}},
			"read",
			[]syscall.Errno{0},
			[]syscall.Errno{0},
		}, // another operation
		{
			[]fault{{Path: "e/blob", Op: "read", Errno: "EIO"}},
			"read",
			[]syscall.Errno{0},
			[]syscall.Errno{0},
		}, // another path
		{
			[]fault{{Path: "*", Errno: "EIO"}},
			"read",
			[]syscall.Errno{0},
			[]syscall.Errno{0},
		}, // "*" does not match "/"
		{
			[]fault{{Path: "*/*", Op: "*", Errno: "EACCES"}},
			"getxattr",
			[]syscall.Errno{0},
			[]syscall.Errno{syscall.EACCES},
		},
		{
			[]fault{{Op: "read", Errno: "ENOENT", After: 2}},
			"read",
			[]syscall.Errno{0, 0, 0, 0},
			[]syscall.Errno{0, 0, syscall.ENOENT, syscall.ENOENT},
		},
		// Operations that fail by themselves do not count towards After.
		{
			[]fault{{Op: "read", Errno: "EIO", After: 1}},
			"read",
			[]syscall.Errno{syscall.ENOENT, 0, 0},
			[]syscall.Errno{syscall.ENOENT, 0, syscall.EIO},
		},
		// The first applicable fault with an errno decides; a later one is not reached.
		{
			[]fault{{Op: "read", Errno: "EACCES", After: 1}, {Op: "read", Errno: "EIO"}},
			"read",
			[]syscall.Errno{0, 0},
			[]syscall.Errno{syscall.EIO, syscall.EIO},
		},
		{
			[]fault{{Op: "read", DelayMS: 1}, {Op: "read", Errno: "EIO"}},
			"read",
			[]syscall.Errno{0},
			[]syscall.Errno{syscall.EIO},
		},
	} {
		b := newBehaviour(make(chan struct{}))
		if err := b.setFaults(c.faults); err != nil {
			t.Fatalf("setFaults(%+v): %v", c.faults, err)
		}
		for i, real := range c.real {
			got := b.serve(c.op, "e/info", func() syscall.Errno { return real })
			if got != c.want[i] {
				t.Errorf("faults %+v, %s call %d: got %v, want %v", c.faults, c.op, i, got,
					c.want[i])
			}
		}
		if n := b.snapshot().Ops[c.op]["e/info"]; n != len(c.real) {
			t.Errorf("faults %+v: counted %d %s calls, want %d", c.faults, n, c.op, len(c.real))
		}
	}
}

func TestBehaviourServeDelay(t *testing.T) {
	stop := make(chan struct{})
	b := newBehaviour(stop)
	faults := []fault{{Op: "read", DelayMS: 30}, {Op: "read", DelayMS: 20}}
	if err := b.setFaults(faults); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = b.serve("read", "x", func() syscall.Errno { return 0 })
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("two delays took %v, want their sum, 50ms", d)
	}

	if err := b.setFaults([]fault{{Op: "read", DelayMS: 60_000}}); err != nil {
		t.Fatal(err)
	}
	close(stop)
	start = time.Now()
	_ = b.serve("read", "x", func() syscall.Errno { return 0 })
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a delay at shutdown took %v", d)
	}
}

func TestBehaviourReset(t *testing.T) {
	b := newBehaviour(make(chan struct{}))
	b.count("create", "e/use")
	b.use("e")
	b.use("e")
	b.release("e")
	want := stats{
		Ops:      map[string]map[string]int{"create": {"e/use": 1}},
		Uses:     map[string]int{"e": 2},
		Releases: map[string]int{"e": 1},
		Refs:     map[string]int{"e": 1},
	}
	if got := b.snapshot(); !equalStats(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	b.reset()
	want = stats{
		Ops: map[string]map[string]int{}, Uses: map[string]int{},
		Releases: map[string]int{}, Refs: map[string]int{"e": 1},
	}
	if got := b.snapshot(); !equalStats(got, want) {
		t.Errorf("after reset: got %+v, want %+v", got, want)
	}
}

// equalStats reports whether a and b hold the same counts.
func equalStats(a, b stats) bool {
	if len(a.Ops) != len(b.Ops) {
		return false
	}
	for op, byPath := range a.Ops {
		if !maps.Equal(byPath, b.Ops[op]) {
			return false
		}
	}
	return maps.Equal(a.Uses, b.Uses) && maps.Equal(a.Releases, b.Releases) &&
		maps.Equal(a.Refs, b.Refs)
}

func TestControlHandler(t *testing.T) {
	b := newBehaviour(make(chan struct{}))
	shutdowns := 0
	h := controlHandler(b, func() { shutdowns++ })
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/faults", `[{"path": "*/info", "op": "read", "errno": "EIO"}]`, 204},
		{"PUT", "/faults", `[]`, 204},
		{"PUT", "/faults", `null`, 204},
		{"PUT", "/faults", `[{"path": "x", "delay_ms": 1}]`, 400}, // a misspelt field
		{"PUT", "/faults", `[{"op": "bogus"}]`, 400},
		{"PUT", "/faults", `[] []`, 400},
		{"PUT", "/faults", `{}`, 400},
		{"GET", "/faults", ``, 200},
		{"GET", "/stats", ``, 200},
		{"POST", "/stats", ``, 405},
		{"POST", "/reset", ``, 204},
		{"POST", "/shutdown", ``, 202},
		{"GET", "/nothing", ``, 404},
	} {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s %s: status %d, want %d (%s)", c.method, c.path, c.body, rec.Code,
				c.want, rec.Body)
		}
	}
	if shutdowns != 1 {
		t.Errorf("shutdown called %d times, want 1", shutdowns)
	}

	req := httptest.NewRequest(http.MethodPut, "/faults",
		strings.NewReader(`[{"path": "a", "op": "lookup", "errno": "ENOENT", "after": 1}]`))
	h.ServeHTTP(httptest.NewRecorder(), req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/faults", nil))
	want := `[{"path":"a","op":"lookup","errno":"ENOENT","delayMs":0,"after":1}]`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("GET /faults: %s, want %s", got, want)
	}
}
