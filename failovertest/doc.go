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
//   - The servers can speak only TLS, with certificates from a test CA
//     (NewCA, WithTLS; Server.TLS is the client's configuration), and
//     require an ACL user (WithUser); Server.Options and Server.URL reach
//     them. StartCluster forms a Redis Cluster of N masters, and
//     StartSentinelGroup a primary with replicas and a Sentinel (Promote
//     fails it over within the region), under the same rules.
//   - StartRESTAPI fakes a Redis Software cluster's REST API (database
//     list, availability, replication lag; delay, hang, errors, 403) for
//     lag-aware health checks (package lagcheck); LaunchRESTAPI starts it
//     outside a test, as LaunchServer does a server.
//   - Faults on the network (latency, black holes, resets) come from the
//     fault proxy in github.com/geofailover/geofailover/faultproxy, a module
//     of its own (it brings toxiproxy's dependencies).
//   - WaitActive, WaitHealth and NextEvent wait for a client's state, at
//     most WaitTimeout, and fail the test with its status when it runs out;
//     Connect gives a plain client to check a server directly;
//     VerifyTestMain runs a package's tests and checks that no goroutine
//     is left behind.
//   - Workload runs commands through a geofailover.Client (or any go-redis
//     client, one of geofailover proxy say) from several goroutines and records a Timeline (per command: start, end, the
//     endpoint that served it, error); Analyze computes the time to the
//     first success on the new endpoint, the time until all workers moved,
//     the errors (reads/writes, not applied/ambiguous), the slowest command
//     during the outage, the time to failback and the number of switches.
//
// A test of your own service looks like this:
//
//	func TestSurvivesRegionLoss(t *testing.T) {
//		ctx := context.Background()
//		east, west := failovertest.StartServer(t), failovertest.StartServer(t) // real redis-server, cleaned up
//		c, err := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
//			{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
//			{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
//		}})
//		if err != nil {
//			t.Fatal(err)
//		}
//		defer c.Close()
//		if err := c.WaitReady(ctx); err != nil {
//			t.Fatal(err)
//		}
//		run := failovertest.Workload{}.Start(c) // 8 workers, SET+GET, 100 ms timeout
//		time.Sleep(200 * time.Millisecond)
//		at := time.Now()
//		if err := east.Kill(); err != nil { // or Pause(), or a proxy fault
//			t.Fatal(err)
//		}
//		time.Sleep(time.Second)
//		rep := run.Stop().Analyze(failovertest.Outage{From: "east", To: "west", At: at})
//		if !rep.Moved || rep.Errors.Reads > 0 {
//			t.Fatal(rep)
//		}
//	}
package failovertest
