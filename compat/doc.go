// Package compat holds the compatibility suite (tests only): go-redis's own
// Ginkgo specs, at the version in go.mod and taken from the module cache,
// run through a one-endpoint geofailover.Client and through a plain
// *redis.Client (the control) on the same fresh redis-server. A spec that
// fails only through geofailover fails the suite. See compat_test.go for
// the spec files, the skips and their reasons.
package compat
