#!/bin/sh
# install.sh install|uninstall: what `make install` and `make uninstall` do
# (and `make deb`, into its staging tree). Every path comes from the
# environment the Makefile sets; see the Makefile's install section.
#
# install puts the binaries, systemd units (with this PREFIX in their
# paths), man pages, shell completions and the example configurations in
# place. An existing configuration is never overwritten. Binaries are
# written under a temporary name and renamed over the old ones, so a QEMU
# starting a VM meanwhile runs either the old or the new hook, never half a
# file nor a bridge helper without its privileges.
#
# The bridge helper is set up as HELPER says: setuid (root:HELPER_GROUP,
# 4750), caps (cap_net_admin+ep) or none (0755). Without HELPER the mode of
# the installed helper is kept (and its group), so an upgrade never takes
# the users' VMs off the network; a first install gets none.
#
# uninstall removes what install put there, except configurations that
# differ from the shipped examples (the administrator's edits).
set -eu

: "${DESTDIR=}" "${PREFIX:=/usr/local}" "${SYSCONFDIR:=/etc}" "${CNI_BIN_DIR:=/opt/cni/bin}"
: "${BIN_DIR:?BIN_DIR: the directory of the built binaries}" "${SRC_DIR:=.}"
: "${BINDIR:=$PREFIX/bin}" "${LIBEXECDIR:=$PREFIX/libexec/tapbridge}" "${MANDIR:=$PREFIX/share/man}"
: "${UNITDIR:=$PREFIX/lib/systemd/system}" "${BASHCOMPDIR:=$PREFIX/share/bash-completion/completions}"
: "${ZSHCOMPDIR:=$PREFIX/share/zsh/site-functions}" "${FISHCOMPDIR:=$PREFIX/share/fish/vendor_completions.d}"
: "${HELPER=}" "${HELPER_GROUP=}" "${MAN_GZIP=}"

D=$DESTDIR
helper=$D$LIBEXECDIR/tapbridge-bridge-helper
man=$D$MANDIR/man8
gz=
[ -n "$MAN_GZIP" ] && gz=.gz
confs="tapbridge.conf bridge.conf"
units="tapbridge.service tapbridge-gc.service tapbridge-gc.timer"

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

# put SRC DST MODE: install SRC as DST atomically (temporary name, rename).
put() {
	install -m "$3" "$1" "$2.tmp-install"
	mv -f "$2.tmp-install" "$2"
}

# sub FILE: the file with the installation's paths in place of the
# defaults the sources name.
sub() {
	sed -e "s#/usr/local/bin/#$BINDIR/#g" -e "s#/usr/local/libexec/tapbridge/#$LIBEXECDIR/#g" \
		-e "s#/etc/tapbridge/#$SYSCONFDIR/tapbridge/#g" "$1"
}

# installed_mode: setuid, caps or none, from the installed helper.
installed_mode() {
	if [ ! -e "$helper" ]; then
		echo none
	elif [ -u "$helper" ]; then
		echo setuid
	elif command -v getcap >/dev/null && getcap "$helper" 2>/dev/null | grep -q cap_net_admin; then
		echo caps
	else
		echo none
	fi
}

install_helper() {
	mode=$HELPER
	if [ -z "$mode" ]; then
		mode=$(installed_mode)
		if [ -u "$helper" ] && [ -z "$HELPER_GROUP" ]; then
			HELPER_GROUP=$(stat -c %G "$helper")
		fi
		say "HELPER not given: keeping the installed helper's mode: $mode"
	fi
	: "${HELPER_GROUP:=kvm}"
	tmp=$helper.tmp-install
	install -m 0755 "$BIN_DIR/qemu-ifup" "$tmp"
	case $mode in
	setuid)
		chown "root:$HELPER_GROUP" "$tmp" || { rm -f "$tmp"; die "HELPER=setuid: cannot give the helper to group $HELPER_GROUP (set HELPER_GROUP)"; }
		chmod 4750 "$tmp" ;;
	caps)
		setcap cap_net_admin+ep "$tmp" || { rm -f "$tmp"; die "HELPER=caps: setcap failed (is libcap2-bin installed, does the file system keep capabilities?)"; } ;;
	none) ;;
	*) rm -f "$tmp"; die "HELPER=$mode: want setuid, caps or none" ;;
	esac
	mv -f "$tmp" "$helper"
	say "bridge helper $LIBEXECDIR/tapbridge-bridge-helper: $mode"
}

do_install() {
	[ -x "$BIN_DIR/tapbridge" ] && [ -x "$BIN_DIR/qemu-ifup" ] || die "$BIN_DIR has no tapbridge and qemu-ifup; run make build"
	install -d "$D$BINDIR" "$D$CNI_BIN_DIR" "$D$LIBEXECDIR" "$man" "$D$UNITDIR" \
		"$D$BASHCOMPDIR" "$D$ZSHCOMPDIR" "$D$FISHCOMPDIR" "$D$SYSCONFDIR/tapbridge"
	put "$BIN_DIR/tapbridge" "$D$BINDIR/tapbridge" 0755
	put "$BIN_DIR/tapbridge" "$D$CNI_BIN_DIR/tapbridge" 0755
	put "$BIN_DIR/qemu-ifup" "$D$LIBEXECDIR/qemu-ifup" 0755
	ln -sf qemu-ifup "$D$LIBEXECDIR/qemu-ifdown"
	install_helper

	tb="env -u TAPBRIDGE_RUN_DIR $BIN_DIR/tapbridge"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	for u in $units; do
		sub "$SRC_DIR/conf/systemd/$u" >"$tmp/$u"
		put "$tmp/$u" "$D$UNITDIR/$u" 0644
	done
	for p in tapbridge qemu-ifup tapbridge-bridge-helper; do
		$tb man "$p" | sub /dev/stdin >"$tmp/$p.8"
		[ -n "$gz" ] && gzip -9n "$tmp/$p.8" # -n: no name or time stamp, reproducible
		put "$tmp/$p.8$gz" "$man/$p.8$gz" 0644
	done
	ln -sf "qemu-ifup.8$gz" "$man/qemu-ifdown.8$gz"
	$tb completion bash >"$tmp/bash" && put "$tmp/bash" "$D$BASHCOMPDIR/tapbridge" 0644
	$tb completion zsh >"$tmp/zsh" && put "$tmp/zsh" "$D$ZSHCOMPDIR/_tapbridge" 0644
	$tb completion fish >"$tmp/fish" && put "$tmp/fish" "$D$FISHCOMPDIR/tapbridge.fish" 0644

	for c in $confs; do
		dst=$D$SYSCONFDIR/tapbridge/$c
		if [ -e "$dst" ]; then
			say "$SYSCONFDIR/tapbridge/$c exists: kept as it is"
		else
			sub "$SRC_DIR/conf/$c" >"$tmp/$c"
			put "$tmp/$c" "$dst" 0644
		fi
	done
}

do_uninstall() {
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	rm -f "$D$BINDIR/tapbridge" "$D$CNI_BIN_DIR/tapbridge" \
		"$D$LIBEXECDIR/qemu-ifup" "$D$LIBEXECDIR/qemu-ifdown" "$helper"
	for u in $units; do rm -f "$D$UNITDIR/$u"; done
	for p in tapbridge qemu-ifup qemu-ifdown tapbridge-bridge-helper; do rm -f "$man/$p.8" "$man/$p.8.gz"; done
	rm -f "$D$BASHCOMPDIR/tapbridge" "$D$ZSHCOMPDIR/_tapbridge" "$D$FISHCOMPDIR/tapbridge.fish"
	for c in $confs; do
		dst=$D$SYSCONFDIR/tapbridge/$c
		[ -e "$dst" ] || continue
		sub "$SRC_DIR/conf/$c" >"$tmp/$c"
		if cmp -s "$tmp/$c" "$dst"; then
			rm -f "$dst"
		else
			say "$SYSCONFDIR/tapbridge/$c was changed: kept"
		fi
	done
	rmdir "$D$LIBEXECDIR" "$D$SYSCONFDIR/tapbridge" 2>/dev/null || true
}

case ${1-} in
install) do_install ;;
uninstall) do_uninstall ;;
*) die "usage: install.sh install|uninstall" ;;
esac
