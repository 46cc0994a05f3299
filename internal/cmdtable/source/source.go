// Package source reads the command table from a real redis-server: the
// input of the generator (../gen) and of the test that keeps the checked-in
// table honest.
package source

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/geofailover/geofailover/failovertest"
	"github.com/geofailover/geofailover/internal/cmdtable"
)

// Table is a server's commands and their flags, keyed by lower-case name
// ("name|subcommand" for subcommands).
type Table struct {
	Version string
	Flags   map[string]cmdtable.Flags
}

// blockingUnflagged are commands that block but that Redis does not flag
// "blocking": WAIT and WAITAOF wait for replicas or the AOF.
var blockingUnflagged = []string{"wait", "waitaof"}

// Read returns the command table of the redis-server at addr, or of one it
// starts from PATH (or $REDIS_SERVER) when addr is empty.
func Read(ctx context.Context, addr string) (*Table, error) {
	if addr == "" {
		dir, err := os.MkdirTemp("", "cmdtable")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		s, err := failovertest.LaunchServer(dir)
		if err != nil {
			return nil, err
		}
		defer s.Kill()
		addr = s.Addr
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	defer rdb.Close()

	info, err := rdb.InfoMap(ctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO server: %w", err)
	}
	reply, err := rdb.Do(ctx, "COMMAND").Slice()
	if err != nil {
		return nil, fmt.Errorf("COMMAND: %w", err)
	}
	t := &Table{Version: info["Server"]["redis_version"], Flags: map[string]cmdtable.Flags{}}
	for _, entry := range reply {
		if err := t.add(entry); err != nil {
			return nil, err
		}
	}
	for _, name := range blockingUnflagged {
		if f, ok := t.Flags[name]; ok {
			t.Flags[name] = (f | cmdtable.Blocking) &^ cmdtable.Harmless
		}
	}
	return t, nil
}

// add records one COMMAND entry: [name, arity, flags, first key, last key,
// step, ACL categories, tips, key specs, subcommands] (Redis 7; older
// servers send the first 7 or 10 fields, with no subcommands).
func (t *Table) add(entry any) error {
	fields, ok := entry.([]any)
	if !ok || len(fields) < 3 {
		return fmt.Errorf("COMMAND: unexpected entry %v", entry)
	}
	name, _ := fields[0].(string)
	flags, _ := fields[2].([]any)
	f := cmdtable.Known
	harmless := true
	for _, fl := range flags {
		switch fl {
		case "readonly":
			f |= cmdtable.ReadOnly
		case "blocking":
			f |= cmdtable.Blocking
		}
		switch fl {
		case "write", "may_replicate", "admin", "pubsub", "blocking", "noscript":
			harmless = false
		}
	}
	if harmless {
		f |= cmdtable.Harmless
	}
	if len(fields) >= 10 {
		if subs, _ := fields[9].([]any); len(subs) > 0 {
			f |= cmdtable.Container
			for _, sub := range subs {
				if err := t.add(sub); err != nil {
					return err
				}
			}
		}
	}
	t.Flags[strings.ToLower(name)] = f
	return nil
}

// FlagsExpr renders f as Go source.
func FlagsExpr(f cmdtable.Flags) string {
	var parts []string
	for _, p := range []struct {
		f    cmdtable.Flags
		name string
	}{{cmdtable.Known, "Known"}, {cmdtable.ReadOnly, "ReadOnly"}, {cmdtable.Blocking, "Blocking"}, {cmdtable.Container, "Container"}, {cmdtable.Harmless, "Harmless"}} {
		if f&p.f != 0 {
			parts = append(parts, p.name)
		}
	}
	return strings.Join(parts, " | ")
}
