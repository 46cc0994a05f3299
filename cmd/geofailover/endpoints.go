package main

import (
	"fmt"
	"net/url"
	"sort"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/config"
)

// loadEndpoints returns the options to use: from --config (its top-level
// key section, if given), or built from URLs given on the command line
// (named after their host:port, weights 1, 1/2, 1/3... in the order
// given). Endpoints come back highest weight first.
func loadEndpoints(configPath, section string, urls []string) (*geofailover.Options, error) {
	var opts *geofailover.Options
	switch {
	case configPath != "" && len(urls) > 0:
		return nil, usageError("give --config or URLs, not both")
	case section != "" && configPath == "":
		return nil, usageError("--section needs --config")
	case configPath != "":
		o, err := config.LoadSection(configPath, section)
		if err != nil {
			return nil, exitError{2, err}
		}
		opts = o
	case len(urls) > 0:
		opts = &geofailover.Options{}
		for i, raw := range urls {
			name := raw
			if u, err := url.Parse(raw); err == nil && u.Host != "" {
				name = u.Host
			}
			opts.Endpoints = append(opts.Endpoints, geofailover.Endpoint{Name: name, Weight: 1 / float64(i+1), URL: raw})
		}
		if err := geofailover.Validate(opts); err != nil {
			return nil, exitError{2, err}
		}
	default:
		return nil, usageError("no endpoints: give --config FILE or one or more redis:// URLs")
	}
	sort.SliceStable(opts.Endpoints, func(i, j int) bool { return opts.Endpoints[i].Weight > opts.Endpoints[j].Weight })
	return opts, nil
}

// describeTarget says where an endpoint points, without secrets.
func describeTarget(e geofailover.Endpoint) string {
	switch {
	case e.URL != "":
		if u, err := url.Parse(e.URL); err == nil {
			return u.Redacted()
		}
		return "(url)"
	case e.Options != nil:
		scheme := "redis"
		if e.Options.TLSConfig != nil {
			scheme = "rediss"
		}
		return fmt.Sprintf("%s://%s/%d", scheme, e.Options.Addr, e.Options.DB)
	case e.ClusterOptions != nil:
		return fmt.Sprintf("cluster %v", e.ClusterOptions.Addrs)
	case e.FailoverOptions != nil:
		return fmt.Sprintf("sentinel %s %v", e.FailoverOptions.MasterName, e.FailoverOptions.SentinelAddrs)
	}
	return "?"
}
