package qemuhook

import (
	"errors"
	"fmt"

	"github.com/tapbridge/tapbridge/internal/config"
	"github.com/tapbridge/tapbridge/internal/libvirt"
	"github.com/tapbridge/tapbridge/internal/link"
)

// libvirtDirs are where fromLibvirt looks; a variable so that tests can
// point it at recorded domain XML.
var libvirtDirs = libvirt.Dirs

// fromLibvirt completes the configuration of a TAP that libvirt made for an
// <interface type='ethernet'> with tapbridge's script. libvirt runs the
// script with a cleared environment, so TAPBRIDGE_MAC never arrives: the
// guest MAC and the domain's tapbridge metadata come from its domain XML
// instead (package libvirt). A TAP no domain claims is left as it was; a
// domain whose metadata is invalid stops the attach.
func fromLibvirt(l *loaded, name string, getenv func(string) string) error {
	if getenv(config.EnvMAC) != "" {
		return nil // the environment speaks for the VM
	}
	link, err := link.Get(name)
	if err != nil {
		return nil // checkTAP says what is wrong
	}
	f, err := libvirt.Find(libvirtDirs(), name, link.Attrs().HardwareAddr)
	if errors.Is(err, libvirt.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("libvirt: %w", err)
	}
	s, err := f.Domain.For(f.Interface)
	if err != nil {
		return fmt.Errorf("libvirt: %w", err)
	}
	if err := s.Apply(l.conf, f.Interface.MAC); err != nil {
		return fmt.Errorf("libvirt: domain %q: %w", f.Domain.Name, err)
	}
	l.rebridge(l.conf.Bridge)
	return nil
}
