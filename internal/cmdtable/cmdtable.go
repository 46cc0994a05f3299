// Package cmdtable says, for each Redis command, what the replay rules need
// to know: whether Redis flags it read-only, whether running it twice is
// harmless, and whether it may block. The
// table is generated from a real server's COMMAND reply (see gen/), never
// typed by hand; a command it does not know (a module's, or a newer Redis's)
// has no flags, so it is treated as a write that does not block.
package cmdtable

import "strings"

//go:generate go run ./gen -o table_gen.go

// Flags are what the table records about a command.
type Flags uint8

const (
	// Known: the command is in the table.
	Known Flags = 1 << iota
	// ReadOnly: Redis flags the command "readonly": it reads data and
	// changes nothing, so sending it twice is harmless.
	ReadOnly
	// Blocking: the command may wait for data or for replicas (Redis's
	// "blocking" flag, plus WAIT and WAITAOF, which Redis does not flag).
	Blocking
	// Container: the command only groups subcommands ("object", "xinfo");
	// look up "name|subcommand" instead.
	Container
	// Harmless: Redis flags the command neither "write", "may_replicate",
	// "admin", "pubsub", "blocking" nor "noscript" (which EVAL, FCALL,
	// EXEC and the connection commands have): PING, ECHO, INFO, TIME,
	// read-only commands... Running it twice changes no data, sends no
	// message and waits for nothing, so it may be sent again as a
	// read-only command may.
	Harmless
)

// Lookup returns the flags of a command given its lower-case name, or
// "name|subcommand" (lower case) for a subcommand. Unknown names return 0.
func Lookup(name string) Flags { return table[name] }

// MayBlock reports whether some blocking command's name starts with the
// byte b (either case): a cheap first test before Lookup.
func MayBlock(b byte) bool { return blockingFirstBytes[b] }

var blockingFirstBytes = func() (t [256]bool) {
	for name, f := range table {
		if f&Blocking != 0 {
			t[name[0]] = true
			t[name[0]&^0x20] = true
		}
	}
	return t
}()

// Len returns the number of commands and subcommands in the table.
func Len() int { return len(table) }

// Lower returns name in lower case. For a command the table knows, in any
// case, it returns the table's own string without allocating (clients such
// as redis-py and redis-benchmark send "GET", "SET"); for any other name,
// strings.ToLower(name).
func Lower(name string) string {
	upper := false
	for i := 0; i < len(name) && !upper; i++ {
		upper = 'A' <= name[i] && name[i] <= 'Z'
	}
	if !upper {
		return name
	}
	var buf [maxNameLen]byte
	if len(name) <= len(buf) {
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		if known, ok := names[string(buf[:len(name)])]; ok {
			return known
		}
	}
	return strings.ToLower(name)
}

// maxNameLen bounds the names Lower looks up (Redis's longest is shorter).
const maxNameLen = 40

// names maps each name of the table to itself, for Lower.
var names = func() map[string]string {
	m := make(map[string]string, len(table))
	for name := range table {
		m[name] = name
	}
	return m
}()
