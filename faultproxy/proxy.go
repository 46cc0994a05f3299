// Package faultproxy is an in-process TCP fault proxy for tests: Shopify
// toxiproxy, used as a library, in front of any address. Point a client at
// Proxy.Addr instead of the server, then add faults: Latency with jitter,
// BlackHole, ResetPeer, Bandwidth, CutAfter, each per direction and
// removable; Disable refuses new connections and closes open ones.
//
// It is a module of its own so that applications using geofailover do not
// inherit toxiproxy's dependencies; it works with any Redis client.
package faultproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Proxy is an in-process TCP fault proxy (Shopify toxiproxy, used as a
// library) in front of one endpoint. Point the client at Proxy.Addr instead
// of the endpoint, then inject faults: each returns a Fault that Remove
// takes away. Faults apply to connections open now and to new ones.
type Proxy struct {
	// Addr is the proxy's "127.0.0.1:port"; it stays the same across
	// Disable and Enable.
	Addr string
	// Upstream is the address the proxy forwards to.
	Upstream string

	p      *toxiproxy.Proxy
	mu     sync.Mutex // serializes Disable, Enable and Close
	closed bool
}

// Direction says which way a fault acts.
type Direction int

const (
	// Both directions.
	Both Direction = iota
	// Upstream: from the client to the server (commands).
	Upstream
	// Downstream: from the server to the client (replies).
	Downstream
)

func (d Direction) streams() []string {
	switch d {
	case Upstream:
		return []string{"upstream"}
	case Downstream:
		return []string{"downstream"}
	}
	return []string{"upstream", "downstream"}
}

// Fault is one fault on a Proxy.
type Fault struct {
	p     *Proxy
	names []string
	once  sync.Once
}

// Remove takes the fault away. Safe to repeat.
func (f *Fault) Remove() {
	f.once.Do(func() {
		for _, n := range f.names {
			_ = f.p.p.Toxics.RemoveToxic(context.Background(), n)
		}
	})
}

var toxiServer = sync.OnceValue(func() *toxiproxy.ApiServer {
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
})

var proxySeq atomic.Uint64

// New starts a proxy on a free 127.0.0.1 port forwarding to upstream
// ("host:port"). The caller must Close it; in tests use Start.
func New(upstream string) (*Proxy, error) {
	name := fmt.Sprintf("faultproxy-%d", proxySeq.Add(1))
	p := toxiproxy.NewProxy(toxiServer(), name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("faultproxy: proxy to %s: %w", upstream, err)
	}
	return &Proxy{Addr: p.Listen, Upstream: upstream, p: p}, nil
}

// Start starts a proxy to upstream for t; it is closed when the test
// ends.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.p.Toxics.ResetToxics(context.Background())
	p.p.Stop()
}

// Disable makes the endpoint unreachable as a crashed host would look:
// new connections are refused and open ones are closed. Enable undoes it.
func (p *Proxy) Disable() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Stop()
}

// Enable accepts connections again, on the same address, after Disable.
func (p *Proxy) Enable() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("faultproxy: proxy %s is closed", p.Addr)
	}
	var err error
	for range 50 { // the port may linger briefly
		if err = p.p.Start(); err == nil || err == toxiproxy.ErrProxyAlreadyStarted {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("faultproxy: enable proxy %s: %w", p.Addr, err)
}

// Latency delays data by latency plus or minus up to jitter.
func (p *Proxy) Latency(latency, jitter time.Duration, dir Direction) *Fault {
	return p.add("latency", dir, map[string]any{"latency": latency.Milliseconds(), "jitter": jitter.Milliseconds()})
}

// BlackHole accepts and holds connections but lets no data through and
// never closes them: a hung server or a dropped route.
func (p *Proxy) BlackHole(dir Direction) *Fault {
	return p.add("timeout", dir, map[string]any{"timeout": 0})
}

// ResetPeer resets (TCP RST) every connection as soon as data flows.
func (p *Proxy) ResetPeer(dir Direction) *Fault {
	return p.add("reset_peer", dir, map[string]any{"timeout": 0})
}

// Bandwidth limits throughput to bytesPerSecond (rounded to whole KB/s, at
// least 1).
func (p *Proxy) Bandwidth(bytesPerSecond int64, dir Direction) *Fault {
	return p.add("bandwidth", dir, map[string]any{"rate": max(bytesPerSecond/1024, 1)})
}

// CutAfter closes each connection once n bytes have passed in dir.
func (p *Proxy) CutAfter(n int64, dir Direction) *Fault {
	return p.add("limit_data", dir, map[string]any{"bytes": n})
}

var faultSeq atomic.Uint64

func (p *Proxy) add(kind string, dir Direction, attrs map[string]any) *Fault {
	f := &Fault{p: p}
	for _, stream := range dir.streams() {
		name := fmt.Sprintf("%s-%s-%d", kind, stream, faultSeq.Add(1))
		body, _ := json.Marshal(map[string]any{"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attrs})
		if _, err := p.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
			// Only our own JSON goes in, with unique names: a failure is a bug.
			panic(fmt.Sprintf("faultproxy: add %s fault: %v", kind, err))
		}
		f.names = append(f.names, name)
	}
	return f
}
