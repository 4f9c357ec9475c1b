package policy

import "testing"

func BenchmarkZZ(b *testing.B) {
	for name, f := range map[string]func(int) Spec{
		"isolated": func(i int) Spec { s := benchSpec(i); return Spec{MAC: s.MAC, IPs: s.IPs, Isolated: true} },
		"dhcp":     func(i int) Spec { s := benchSpec(i); return Spec{MAC: s.MAC, IPs: s.IPs, DHCPGuard: true} },
		"mac":      func(i int) Spec { s := benchSpec(i); return Spec{MAC: s.MAC, IPs: s.IPs, MACSpoofCheck: true} },
		"ip":       func(i int) Spec { s := benchSpec(i); return Spec{MAC: s.MAC, IPs: s.IPs, IPSpoofCheck: true} },
		"all":      benchSpec,
	} {
		b.Run(name, func(b *testing.B) { benchFrames(b, 64, f) })
	}
}
