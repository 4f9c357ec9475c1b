package mac

import (
	"strings"
	"testing"
)

func TestFromNameStableAndLocal(t *testing.T) {
	a, b := FromName("vm1"), FromName("vm1")
	if a.String() != b.String() {
		t.Fatalf("FromName not stable: %s != %s", a, b)
	}
	if FromName("vm2").String() == a.String() {
		t.Fatalf("FromName(vm1) == FromName(vm2) = %s", a)
	}
	if a[0]&0x02 == 0 || a[0]&0x01 != 0 {
		t.Fatalf("FromName(vm1) = %s: not locally administered unicast", a)
	}
}

func TestRandom(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		m, err := Random()
		if err != nil {
			t.Fatal(err)
		}
		if m[0]&0x02 == 0 || m[0]&0x01 != 0 {
			t.Fatalf("Random() = %s: not locally administered unicast", m)
		}
		if seen[m.String()] {
			t.Fatalf("Random() repeated %s", m)
		}
		seen[m.String()] = true
	}
}

func TestParse(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"52:54:00:12:34:56", ""},
		{"01:00:5e:00:00:01", "multicast"},
		{"00:00:00:00:00:00", "all zeros"},
		{"zz", "invalid MAC"},
		{"00:11:22:33:44:55:66:77", "invalid MAC"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Parse(%q) = %v, want error %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestHostPort(t *testing.T) {
	m, _ := Parse("52:54:00:12:34:56")
	if got := HostPort(m).String(); got != "fe:54:00:12:34:56" {
		t.Fatalf("HostPort = %s", got)
	}
	if m[0] != 0x52 {
		t.Fatalf("HostPort modified its input")
	}
}
