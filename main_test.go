package geofailover_test

import (
	"testing"

	"github.com/geofailover/geofailover/failovertest"
)

func TestMain(m *testing.M) {
	failovertest.VerifyTestMain(m)
}
