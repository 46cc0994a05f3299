package geofailover

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// LogRedisTo sends go-redis's own log lines to l, at level, instead of
// stderr. go-redis has one logger for the whole process (redis.SetLogger),
// so this affects every go-redis client in it, ours and yours; during an
// outage go-redis logs a line for every failed dial, dozens a second, so
// slog.LevelDebug is a good level. Call it once, at start-up, before any
// client runs: go-redis reads its logger without synchronisation.
func LogRedisTo(l *slog.Logger, level slog.Level) { redis.SetLogger(redisLog{l, level}) }

// redisLog adapts an slog.Logger to go-redis's logger interface.
type redisLog struct {
	l     *slog.Logger
	level slog.Level
}

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if r.l.Enabled(ctx, r.level) {
		r.l.Log(ctx, r.level, strings.TrimSpace(fmt.Sprintf(format, v...)), "source", "go-redis")
	}
}
