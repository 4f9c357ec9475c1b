package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/libvirt"
)

// stdin is what libvirt-hook reads the domain XML from; a variable so that
// tests can feed it.
var stdin io.Reader = os.Stdin

func libvirtHookCommand() command {
	c := command{
		name:    "libvirt-hook",
		hidden:  true, // run by libvirtd; see docs/libvirt.md
		summary: "libvirt's QEMU hook: port policy for <interface type='bridge'>",
		usage:   "[--config FILE] DOMAIN OPERATION SUBOPERATION [EXTRA] < DOMAIN-XML",
		help: `Run by libvirtd as /etc/libvirt/hooks/qemu.d/tapbridge (conf/libvirt), with
the domain XML on stdin. At "prepare" it checks the domain's tapbridge
metadata and saves the XML for qemu-ifup (libvirt runs an interface script
with a cleared environment: qemu-ifup finds the guest MAC and the metadata
there). At "start", when libvirt has made and enslaved the TAPs but QEMU
does not run yet, every <interface type='bridge'> on the configured bridge
gets its port policy; at "release" the policies go. Other operations do
nothing, as does any operation of an unprivileged libvirtd
(qemu:///session, whose interfaces tapbridge's bridge helper attaches). A
non-zero exit makes libvirt refuse to start the domain.

The configuration is --config, else /etc/tapbridge/tapbridge.conf if it
exists (libvirt passes no TAPBRIDGE_CONF). See docs/libvirt.md.

Examples:
  install -m 0755 conf/libvirt/qemu.d/tapbridge /etc/libvirt/hooks/qemu.d/tapbridge
  virsh dumpxml vm1 | tapbridge libvirt-hook vm1 prepare begin -
`,
	}
	c.run = func(args []string, out io.Writer) error {
		fs := flagSet(&c, out)
		path := fs.StringP("config", "c", "", "configuration file (default /etc/tapbridge/tapbridge.conf, if it exists)")
		if err := parse(fs, args); err != nil {
			return handled(err)
		}
		if os.Geteuid() != 0 {
			// An unprivileged libvirtd (qemu:///session) runs the same
			// hooks as its user: its bridge interfaces are the bridge
			// helper's, and nothing here is the hook's to do.
			_, _ = io.Copy(io.Discard, stdin)
			return nil
		}
		file, optional := *path, false
		if file == "" {
			file, optional = config.DefaultPath, true
		}
		conf, err := config.Load(file, optional)
		if err != nil {
			return err
		}
		if fs.NArg() < 3 {
			return fmt.Errorf("%w: libvirt-hook wants DOMAIN OPERATION SUBOPERATION [EXTRA], got %d arguments", ErrUsage, fs.NArg())
		}
		return libvirt.Hook(conf, fs.Args(), stdin)
	}
	return c
}
