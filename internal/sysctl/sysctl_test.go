package sysctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadWrite(t *testing.T) {
	old := root
	root = t.TempDir() + "/"
	t.Cleanup(func() { root = old })
	key := Iface("ipv4", "eth0", "rp_filter")
	if key != "net/ipv4/conf/eth0/rp_filter" {
		t.Fatalf("Iface = %q", key)
	}
	if err := os.MkdirAll(filepath.Dir(root+key), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+key, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := Read(key); err != nil || v != "1" {
		t.Fatalf("Read = %q, %v; want 1", v, err)
	}
	if err := Write(key, "2"); err != nil {
		t.Fatal(err)
	}
	if v, _ := Read(key); v != "2" {
		t.Errorf("after Write(2): %q", v)
	}
	_, err := Read(Iface("ipv4", "nope0", "rp_filter"))
	if err == nil || !strings.Contains(err.Error(), "reading sysctl net.ipv4.conf.nope0.rp_filter") {
		t.Errorf("Read(missing) = %v, want an error naming net.ipv4.conf.nope0.rp_filter", err)
	}
}
