package main

import (
	"fmt"
	"os"

	"github.com/alicebob/miniredis/v2"

	"github.com/geofailover/geofailover/failovertest"
)

// region is one local Redis server of the demo.
type region struct {
	name   string
	weight float64
	addr   string
	down   func() error // take it down (SIGKILL, or close the in-process server)
	up     func() error // bring it back on the same address
}

// startRegions starts one local server per name: real redis-server
// processes when one is on PATH (unless inProcess), otherwise in-process
// miniredis servers. kind says which; cleanup removes them all.
func startRegions(names []string, weights []float64, inProcess bool) (regions []*region, kind string, cleanup func(), err error) {
	var stops []func()
	cleanup = func() {
		for _, s := range stops {
			s()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if bin, berr := failovertest.Binary(); berr == nil && !inProcess {
		dir, err := os.MkdirTemp("", "geofailover-demo-")
		if err != nil {
			return nil, "", nil, err
		}
		stops = append(stops, func() { os.RemoveAll(dir) })
		for i, n := range names {
			s, err := failovertest.LaunchServer(dir + "/" + n)
			if err != nil {
				return nil, "", nil, err
			}
			stops = append([]func(){func() { _ = s.Kill() }}, stops...) // kill before removing the directory
			regions = append(regions, &region{name: n, weight: weights[i], addr: s.Addr,
				down: s.Kill, up: s.Restart})
			kind = fmt.Sprintf("redis-server %s (%s)", s.Version, bin)
		}
		return regions, kind, cleanup, nil
	}
	for i, n := range names {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, "", nil, fmt.Errorf("in-process server: %w", err)
		}
		stops = append(stops, m.Close)
		regions = append(regions, &region{name: n, weight: weights[i], addr: m.Addr(),
			down: func() error { m.Close(); return nil }, up: m.Restart})
	}
	return regions, "in-process miniredis servers (no redis-server on PATH)", cleanup, nil
}
