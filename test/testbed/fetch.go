package testbed

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// FetchTimeout bounds one FetchFrom: connect, request and body.
const FetchTimeout = 10 * time.Second

// FetchFrom GETs url from inside the namespace netns (an `ip netns` name or
// a path) and returns the body. A status other than 200 is an error.
//
// The socket is created inside ns.Do, on a thread locked into the namespace;
// a socket stays in the namespace it was created in, so net/http may then
// use it from any goroutine. Proxies from the environment are ignored and
// the host must be an IP literal (no resolver runs in the namespace).
func FetchFrom(netns, url string) (string, error) {
	n := OpenNetNS(netns)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func() error {
			// FallbackDelay < 0: no Happy Eyeballs, whose parallel dial
			// would run in other goroutines, on other threads.
			d := net.Dialer{FallbackDelay: -1}
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	client := &http.Client{
		Timeout:   FetchTimeout,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
	resp, err := client.Get(url)
	if err != nil {
		return "", fmt.Errorf("fetching %q from netns %q: %w", url, n, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading %q from netns %q: %w", url, n, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("fetching %q from netns %q: %s", url, n, resp.Status)
	}
	return string(body), nil
}
