package uplink

import (
	"fmt"
	"time"

	"github.com/tapbridge/tapbridge/internal/handover"
)

// handOver moves the host's DHCP client and IPv6 autoconfiguration from the
// uplink to the bridge once Up holds it there (see package handover); the
// way back is in restoreLive.
func handOver(o Options, res Result) (Result, error) {
	hmsg, err := handover.Run(handover.Options{From: o.Uplink, To: o.Bridge, Timeout: o.probeTimeout(), Log: o.Log})
	if hmsg != "" {
		res.Message += "; " + hmsg
	}
	if err != nil {
		return res, fmt.Errorf("bridge %q holds uplink %q, but %w", o.Bridge, o.Uplink, err)
	}
	return res, nil
}

func (o Options) probeTimeout() time.Duration {
	if o.ProbeTimeout > 0 {
		return o.ProbeTimeout
	}
	return DefaultProbeTimeout
}
