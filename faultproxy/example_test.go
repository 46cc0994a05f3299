package faultproxy_test

import (
	"fmt"
	"os"
	"time"

	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/faultproxy"
)

// A fault proxy in front of a server: add latency, then a black hole, and
// take them away.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	s, err := failovertest.LaunchServer(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Kill()
	p, err := faultproxy.New(s.Addr)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	// Point a client at p.Addr instead of s.Addr, then:
	slow := p.Latency(50*time.Millisecond, 10*time.Millisecond, faultproxy.Both)
	slow.Remove()
	hole := p.BlackHole(faultproxy.Downstream)
	hole.Remove()
	fmt.Println(p.Upstream == s.Addr)
	// Output: true
}
