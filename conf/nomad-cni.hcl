# A Nomad job whose QEMU guest sits on the LAN through tapbridge.
#
# On each client:
#   make install CNI_BIN_DIR=/opt/cni/bin
#   install -m 0644 conf/cni/10-tapbridge.conflist /opt/cni/config/
# with, in the client's configuration (these are the defaults):
#   client {
#     cni_path       = "/opt/cni/bin"
#     cni_config_dir = "/opt/cni/config"
#   }
# Then:
#   nomad job run conf/nomad-cni.hcl
#
# Nomad creates the allocation's network namespace and runs the CNI network
# "tapbridge" (the "name" in 10-tapbridge.conflist) in it: the plugin makes
# the TAP "eth0" there, owned by nobody:nogroup, and joins it to br0. The
# task runs in that namespace (the exec driver joins the group's network
# namespace) and QEMU opens the TAP by name; the task must see /dev/net/tun
# and the disk image. The guest MAC is passed to the
# plugin as CNI_ARGS MAC=... and to QEMU, so the two agree and the guest
# keeps its DHCP lease across restarts.
#
# Nomad releases older than 1.8 have no cni { args } block; drop it and
# the plugin derives the MAC from the allocation ID (see docs/cni.md).
# Nomad releases whose libcni predates CNI 1.1.0 need "cniVersion":
# "1.0.0" in the conflist.

job "vm1" {
  datacenters = ["dc1"]

  group "vm" {
    network {
      mode = "cni/tapbridge"

      cni {
        args = {
          MAC = "52:54:00:12:34:56"
        }
      }
    }

    task "qemu" {
      driver = "exec"
      user   = "nobody"

      config {
        command = "/usr/bin/qemu-system-x86_64"
        args = [
          "-machine", "q35,accel=kvm:tcg",
          "-m", "1024",
          "-nographic",
          "-drive", "file=/srv/vm/vm1.qcow2,if=virtio",
          "-netdev", "tap,id=n0,ifname=eth0,script=no,downscript=no",
          "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56",
        ]
      }

      resources {
        cpu    = 2000
        memory = 1200
      }
    }
  }
}
