// Package failovertest puts real outages in front of a Redis client, for
// geofailover's own tests and for yours: "kill my preferred region and
// check my service keeps answering" in a few lines.
//
//   - StartServer / StartServers run real redis-server processes on free
//     127.0.0.1 ports, removed when the test ends (even if it fails or
//     panics; the server log is printed when it failed). Kill (SIGKILL),
//     Pause and Resume (SIGSTOP/SIGCONT), Stop (SIGTERM) and Restart on the
//     same port; only processes this package started are signalled, by
//     PID. No persistence unless WithPersistence. Without redis-server a
//     test is skipped with an install hint, or fails when CI=true.
//   - StartProxy puts an in-process TCP fault proxy (Shopify toxiproxy as a
//     library) in front of any address: Latency with jitter, BlackHole,
//     ResetPeer, Bandwidth, CutAfter, per direction and removable; Disable
//     refuses new connections and closes open ones.
//   - Workload runs commands through a geofailover.Client from several
//     goroutines and records a Timeline (per command: start, end, the
//     endpoint that served it, error); Analyze computes the time to the
//     first success on the new endpoint, the time until all workers moved,
//     the errors (reads/writes, not applied/ambiguous), the slowest command
//     during the outage, the time to failback and the number of switches.
//
// A test of your own service looks like this:
//
//	func TestSurvivesRegionLoss(t *testing.T) {
//		east, west := failovertest.StartServer(t), failovertest.StartServer(t)
//		c, _ := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
//			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
//			{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
//		}})
//		defer c.Close()
//		c.WaitReady(ctx)
//		run := failovertest.Workload{}.Start(c)
//		time.Sleep(200 * time.Millisecond)
//		at := time.Now()
//		east.Kill()
//		time.Sleep(time.Second)
//		rep := run.Stop().Analyze(failovertest.Outage{From: "east", To: "west", At: at})
//		if !rep.Moved || rep.Errors.Reads > 0 {
//			t.Fatalf("service did not survive: %v", rep)
//		}
//	}
package failovertest
