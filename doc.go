// Package geofailover gives go-redis applications client-side geographic
// failover and failback across several Redis databases.
//
// A Client holds several weighted endpoints and sends all traffic to the
// best usable one. A circuit breaker per endpoint (over a sliding time
// window of command outcomes) and periodic health checks on a dedicated
// connection detect failures and hung servers; one supervisor goroutine per
// client then switches at once to the next-best endpoint (failover), and
// back when a preferred endpoint has recovered and stayed healthy
// (failback). The Client implements redis.UniversalClient, so application
// code keeps using go-redis as before.
//
// Across a switch, a command that never reached a server is retried on the
// next endpoint; one that may have reached it is retried only if Redis flags
// it read-only (or the caller opted in with AllowReplay or
// Options.ReplayWrites), so writes are never applied twice by default.
// Pipelines and transactions go whole to one endpoint. Watch never sends
// EXEC to an endpoint other than the one it watched on, SCAN cursors never
// move between endpoints, and a blocking command waiting at a switch is
// interrupted (ErrEndpointChanged). Subscriptions follow the active
// endpoint. The table "what happens to each kind of command during
// a switch" in docs/rules.md lists each case and the test that checks it.
//
// # Getting started
//
// New takes Options with the endpoints and their weights; every other
// field has a default (the Default constants). The examples start two
// local redis-server processes, east and west, as a region and its
// standby.
//
// # Watching it work
//
// Options.OnEvent sees every Event from the first; Client.Events
// subscribes later. Status reports each endpoint's health, breaker and
// counts; package statuspage serves them over HTTP, and
// extra/geofailoverotel exports them to OpenTelemetry.
//
// # Testing against real outages
//
// Package failovertest starts real servers, kills, freezes and restarts
// them, runs a workload and measures what it saw; package faultproxy adds
// latency, black holes and resets in between.
//
// # Compatibility
//
// Before v1, a minor release may change the API; CHANGELOG.md says how to
// adapt, and api/geofailover.txt records the API of each release.
package geofailover
