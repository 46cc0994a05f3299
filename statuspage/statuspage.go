// Package statuspage serves a geofailover.Client's state over HTTP: JSON
// for programs, a self-contained page for people. It is a package of its
// own so that the core package does not bring net/http and html/template
// into every program that uses it.
package statuspage

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/geofailover/geofailover"
)

// Document is what Handler serves as JSON.
type Document struct {
	// Active is the endpoint taking traffic ("" for none).
	Active string
	// Endpoints is Client.Status.
	Endpoints []geofailover.EndpointStatus
	// Events are the last events (up to 50), oldest first.
	Events []geofailover.Event
	// Closed is true once the client is closed.
	Closed bool
	At     time.Time
}

// Handler returns an http.Handler that shows c's state. A request that
// accepts application/json gets a Document; any other (a
// browser) gets a self-contained HTML page (no script, style or font from
// the network) that shows the same at a glance and reloads itself every
// second. It serves GET and HEAD only. It shows no credentials, but the
// errors, as Status has them, name servers' addresses: mount it where only
// operators reach it.
func Handler(c *geofailover.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		doc := Document{Active: c.Active(), Endpoints: c.Status(), Events: c.RecentEvents(), At: time.Now()}
		doc.Closed = doc.Endpoints == nil
		w.Header().Set("Cache-Control", "no-store")
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_ = page.Execute(w, doc)
	})
}

var page = template.Must(template.New("status").Funcs(template.FuncMap{
	"ms": func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return d.Round(10 * time.Microsecond).String()
	},
	"clock": func(t time.Time) string { return t.Format("15:04:05.000") },
	"errtext": func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	},
	"reverse": func(evs []geofailover.Event) []geofailover.Event {
		out := make([]geofailover.Event, len(evs))
		for i, ev := range evs {
			out[len(evs)-1-i] = ev
		}
		return out
	},
	"describe": func(ev geofailover.Event) string {
		var b strings.Builder
		for _, a := range ev.LogValue().Group()[1:] { // after the kind
			if b.Len() > 0 {
				b.WriteString("  ")
			}
			b.WriteString(a.Key + "=" + a.Value.String())
		}
		return b.String()
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="1">
<title>geofailover: {{if .Active}}{{.Active}}{{else}}no endpoint{{end}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:0 0 .2em}
.sub{color:#666;margin-bottom:1em}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{padding:.35em .8em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}
tr.active{background:#eaf6ea;font-weight:600}
.ok{color:#1a7f37}.bad{color:#c62828}.unk{color:#8a6d00}
.err{color:#c62828;font-size:.9em;max-width:30em;word-break:break-word}
.none{color:#c62828;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
</style></head>
<body>
<h1>geofailover</h1>
<div class="sub">{{if .Closed}}<span class="none">client closed</span>{{else if .Active}}traffic on <strong id="active">{{.Active}}</strong>{{else}}<span class="none" id="active">no endpoint serving: all down</span>{{end}} · {{clock .At}} · reloads every second</div>
<table id="endpoints">
<tr><th>endpoint</th><th>weight</th><th>health</th><th>breaker</th><th>last check</th><th class="num">served</th><th class="num">failed</th><th class="num" title="calls that failed here and were sent on to another endpoint (never run here, or replayed)">retried elsewhere</th><th class="num">in flight</th><th>last error</th></tr>
{{range .Endpoints}}<tr class="{{if .Active}}active{{end}}" data-endpoint="{{.Name}}">
<td>{{if .Active}}▶ {{end}}{{.Name}}</td><td class="num">{{.Weight}}</td>
<td class="{{if eq .Health.String "healthy"}}ok{{else if eq .Health.String "unhealthy"}}bad{{else}}unk{{end}}">{{.Health}}{{if .HeldBack}} <span class="unk" title="{{errtext .HeldBack}}">(held back)</span>{{end}}</td>
<td class="{{if eq .Breaker.String "open"}}bad{{else}}ok{{end}}">{{.Breaker}}</td>
<td>{{ms .LastCheckLatency}}</td>
<td class="num">{{.Calls.Served}}</td><td class="num">{{.Calls.Failed}}</td><td class="num">{{.Calls.RetriedUnsent}} + {{.Calls.Replayed}}</td><td class="num">{{.InFlight}}</td>
<td class="err">{{errtext .LastError}}</td></tr>
{{end}}</table>
<h2 style="font-size:1.1em">Recent events</h2>
<table id="events">
<tr><th>at</th><th>event</th><th>details</th></tr>
{{range reverse .Events}}<tr><td>{{clock .At}}</td><td>{{.Kind}}</td><td>{{describe .}}</td></tr>
{{else}}<tr><td colspan="3">none yet</td></tr>{{end}}
</table>
</body></html>
`))
