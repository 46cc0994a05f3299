// Package geofailoverotel connects a geofailover.Client to OpenTelemetry.
// It is a module of its own, as go-redis's extra/redisotel is, so that the
// core package does not depend on OpenTelemetry.
//
// Tracing and go-redis's own metrics: give Options.OnNewClient a function
// that instruments each client the library builds with redisotel, naming
// the endpoint in an attribute (see the example): every member is
// instrumented, replacements included, before it serves a command.
package geofailoverotel
