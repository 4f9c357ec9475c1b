package testbed

import "os"

// CoverDir is where tapbridge's binaries write their coverage counters when
// they are built with -cover (make test's build-cover):
// TAPBRIDGE_TEST_GOCOVERDIR, which make test sets, else the GOCOVERDIR that
// go test -cover gives the test binary. Empty when coverage is not
// collected.
func CoverDir() string {
	if d := os.Getenv("TAPBRIDGE_TEST_GOCOVERDIR"); d != "" {
		return d
	}
	return os.Getenv("GOCOVERDIR")
}

// Env returns an environment of exactly kv ("KEY=VALUE") for running one of
// tapbridge's binaries, or a program that runs them (cnitool, containerd),
// plus GOCOVERDIR=CoverDir() when coverage is collected: a binary built with
// -cover that does not get it writes nothing and says so on stderr.
func Env(kv ...string) []string {
	if d := CoverDir(); d != "" {
		return append(kv[:len(kv):len(kv)], "GOCOVERDIR="+d)
	}
	return kv
}
