package failovertest_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/geofailover/geofailover"
	"github.com/geofailover/geofailover/failovertest"
)

// Kill the preferred region under load and check that reads never failed
// and traffic moved. (In a test, StartServer(t) replaces LaunchServer and
// the cleanup.)
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	east, err := failovertest.LaunchServer(dir + "/east")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer east.Kill()
	west, err := failovertest.LaunchServer(dir + "/west")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer west.Kill()

	c, _ := geofailover.New(&geofailover.Options{Endpoints: []geofailover.Endpoint{
		{Name: "east", Weight: 1, URL: "redis://" + east.Addr},
		{Name: "west", Weight: 0.5, URL: "redis://" + west.Addr},
	}})
	defer c.Close()
	_ = c.WaitReady(context.Background())

	run := failovertest.Workload{}.Start(c) // 8 workers, SET+GET, 100 ms timeout
	time.Sleep(200 * time.Millisecond)
	at := time.Now()
	east.Kill()
	time.Sleep(300 * time.Millisecond)
	rep := run.Stop().Analyze(failovertest.Outage{From: "east", To: "west", At: at})

	fmt.Println("moved to west:", rep.Moved && rep.AllWorkersMoved)
	fmt.Println("read errors:", rep.Errors.Reads)
	fmt.Println("switches:", rep.Switches)
	// Output:
	// moved to west: true
	// read errors: 0
	// switches: 1
}
