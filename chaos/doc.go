// Package chaos is geofailover's chaos suite: scenarios of real outages
// (hard kill, hang, black hole, latency, reset storms, a flapping endpoint,
// all endpoints down, a cascade over three endpoints, 1,000 goroutines
// during a failover, Close during a failover) run against real redis-server
// processes with the failovertest kit. It holds tests only:
//
//	go test -race ./chaos                      # the CI part, a few minutes
//	go test -race ./chaos -chaos.soak -timeout 1h  # longer soak variants
//
// Each scenario checks that no command hangs beyond its timeout, that
// traffic switches and fails back, that reads which never reached a server
// surface no error, and (for the package) that no goroutine is left behind.
package chaos
