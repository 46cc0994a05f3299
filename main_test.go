package geofailover_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/geofailover/geofailover/failovertest"
)

func TestMain(m *testing.M) {
	failovertest.SilenceRedisLog() // go-redis logs every refused dial
	goleak.VerifyTestMain(m)
}
