package proxy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geofailover/geofailover/failovertest"
)

// clientReport is what testdata/clients/*_failover.* print: per kind of
// operation, successes and failures in each second of the run.
type clientReport struct {
	OK     map[string][]int `json:"ok"`
	Failed map[string][]int `json:"failed"`
	Errors []string         `json:"errors"`
}

// otherLanguage is a client library in another language, run as a script.
type otherLanguage struct {
	name    string
	command func(t *testing.T, addr, port, seconds string) *exec.Cmd // nil when missing
	install string                                                   // how to get it
}

var otherLanguages = []otherLanguage{
	{
		name: "redis-py",
		command: func(t *testing.T, host, port, seconds string) *exec.Cmd {
			for _, py := range []string{"/usr/bin/python3", "python3"} {
				if exec.Command(py, "-c", "import redis").Run() == nil {
					return exec.Command(py, "testdata/clients/redispy_failover.py", host, port, seconds)
				}
			}
			return nil
		},
		install: "apt-get install -y python3-redis",
	},
	{
		name: "ioredis",
		command: func(t *testing.T, host, port, seconds string) *exec.Cmd {
			if _, err := exec.LookPath("node"); err != nil {
				return nil
			}
			if _, err := os.Stat("testdata/clients/node_modules/ioredis"); err != nil {
				return nil
			}
			return exec.Command("node", "testdata/clients/ioredis_failover.js", host, port, seconds)
		},
		install: "apt-get install -y nodejs npm && npm ci --prefix proxy/testdata/clients",
	},
}

// TestOtherLanguages: redis-py and ioredis clients of the proxy keep
// running pipelines, a transaction, a blocking pop and Pub/Sub while the
// preferred region is killed (at 1.2 s) and restarted (at 2.4 s) behind
// the proxy. Only operations in flight at the kill may fail; each kind
// succeeds during the outage (on the standby) and after the failback.
func TestOtherLanguages(t *testing.T) {
	for _, lang := range otherLanguages {
		t.Run(lang.name, func(t *testing.T) {
			r := startRig(t, nil)
			host, port := strings.Split(r.addr, ":")[0], strings.Split(r.addr, ":")[1]
			cmd := lang.command(t, host, port, "5")
			if cmd == nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is missing (in CI that is a failure): %s", lang.name, lang.install)
				}
				t.Skipf("%s is missing: %s", lang.name, lang.install)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			started := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1200*time.Millisecond - time.Since(started))
			if err := r.east.Kill(); err != nil {
				t.Fatal(err)
			}
			failovertest.WaitActive(t, r.client, "west")
			time.Sleep(2400*time.Millisecond - time.Since(started))
			if err := r.east.Restart(); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%s: %v\n%s", filepath.Base(cmd.Args[1]), err, stderr.String())
			}
			failovertest.WaitActive(t, r.client, "east")
			var rep clientReport
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("report %q: %v\n%s", stdout.String(), err, stderr.String())
			}
			t.Logf("%s: ok %v failed %v errors %q", lang.name, rep.OK, rep.Failed, rep.Errors)
			for _, kind := range []string{"pipeline", "transaction", "blocking_pop", "pubsub_received"} {
				ok, failed := rep.OK[kind], rep.Failed[kind]
				if len(ok) < 5 {
					t.Fatalf("%s: no per-second counts in the report", kind)
				}
				if ok[1]+ok[2] == 0 {
					t.Errorf("%s: no success while east was down (seconds 1-2): %v", kind, ok)
				}
				if ok[4] == 0 {
					t.Errorf("%s: no success after east came back (second 4): %v", kind, ok)
				}
				if n := sum(failed); n > 3 {
					t.Errorf("%s: %d failures, more than the operations in flight at the kill: %v %q", kind, n, failed, rep.Errors)
				}
			}
		})
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
