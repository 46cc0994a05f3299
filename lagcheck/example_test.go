package lagcheck_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/lagcheck"
)

// An Active-Active database in two Redis Software clusters: traffic is not
// moved to a region whose replication lags more than 500 ms (compiled, not
// run: its hosts are examples).
func Example() {
	caPEM, err := os.ReadFile("/etc/geofailover/cluster-ca.pem")
	if err != nil {
		return
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	// BEGIN lagcheck
	chk, err := lagcheck.New(lagcheck.Options{
		APIs: map[string]string{ // Redis address -> its cluster's REST API (default https://<host>:9443)
			"redis-12000.eu.example:12000": "https://eu.example:9443",
			"redis-12000.us.example:12000": "https://us.example:9443",
		},
		Username: "monitor@example.com", Password: os.Getenv("RE_PASSWORD"),
		TLSConfig:    &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		LagTolerance: 500 * time.Millisecond, // zero: availability only
	})
	if err != nil {
		return
	}
	defer chk.Close()
	c, err := geofailover.New(&geofailover.Options{
		Endpoints: []geofailover.Endpoint{
			{Name: "eu", Weight: 1, URL: "redis://redis-12000.eu.example:12000"},
			{Name: "us", Weight: 0.5, URL: "redis://redis-12000.us.example:12000"},
		},
		HealthCheck: chk.Func(), // PING, then the REST API
	})
	// END lagcheck
	if err != nil {
		return
	}
	defer c.Close()
}
