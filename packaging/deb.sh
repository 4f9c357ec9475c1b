#!/bin/sh
# deb.sh: what `make deb` does. Stages an installation with install.sh
# (PREFIX=/usr, man pages compressed, the helper 0755), adds the Debian
# control files from packaging/debian/, and builds
# $DEB_DIR/tapbridge_$DEB_VERSION_$ARCH.deb with dpkg-deb (no debhelper).
#
# The helper's privileges are not in the package: postinst gives it
# root:kvm 4750 with dpkg-statoverride, which the administrator may change
# (dpkg-statoverride --update --add ...) and dpkg keeps across upgrades;
# postrm removes the override on purge.
set -eu

: "${BIN_DIR:?}" "${SRC_DIR:=.}" "${DEB_DIR:?}" "${DEB_VERSION:?}"
: "${DEB_MAINTAINER:=tapbridge developers <tapbridge@example.org>}"
arch=$(dpkg --print-architecture)
stage=$DEB_DIR/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

DESTDIR=$stage PREFIX=/usr SYSCONFDIR=/etc CNI_BIN_DIR=/usr/lib/cni BIN_DIR=$BIN_DIR SRC_DIR=$SRC_DIR \
	UNITDIR=/lib/systemd/system ZSHCOMPDIR=/usr/share/zsh/vendor-completions \
	HELPER=none HELPER_GROUP=root MAN_GZIP=1 \
	sh "$SRC_DIR/packaging/install.sh" install >/dev/null

doc=$stage/usr/share/doc/tapbridge
install -d "$doc"
install -m 0644 "$SRC_DIR/packaging/debian/copyright" "$doc/copyright"
for f in README.md CHANGELOG.md docs/qemu.md docs/cni.md docs/design.md docs/json.md; do
	[ -f "$SRC_DIR/$f" ] && gzip -9nc "$SRC_DIR/$f" >"$doc/$(basename "$f").gz"
done
# A native package's changelog, in Debian's format; the history is in
# CHANGELOG.md.
date=$(git -C "$SRC_DIR" log -1 --format=%aD 2>/dev/null || date -R)
cat >"$stage/changelog" <<CHANGES
tapbridge ($DEB_VERSION) unstable; urgency=medium

  * tapbridge $DEB_VERSION.
    The history is in /usr/share/doc/tapbridge/CHANGELOG.md.gz.

 -- $DEB_MAINTAINER  $date
CHANGES
gzip -9nc "$stage/changelog" >"$doc/changelog.gz"
rm "$stage/changelog"
chmod 0644 "$doc"/*

install -d "$stage/usr/share/lintian/overrides"
install -m 0644 "$SRC_DIR/packaging/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/tapbridge"
for f in postinst postrm; do
	install -m 0755 "$SRC_DIR/packaging/debian/$f" "$stage/DEBIAN/$f"
done
(cd "$stage" && find etc -type f | sed 's#^#/#' | sort) >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$DEB_VERSION/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	-e "s/@MAINTAINER@/$DEB_MAINTAINER/" "$SRC_DIR/packaging/debian/control" >"$stage/DEBIAN/control"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
# Reproducible: every file dated like the commit.
find "$stage" -exec touch -h -d "$date" {} +

deb=$DEB_DIR/tapbridge_${DEB_VERSION}_$arch.deb
SOURCE_DATE_EPOCH=$(date -d "$date" +%s) dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
