#!/usr/bin/env bash
# Builds the Debian package of wanlb (binary, systemd unit, /etc/wanlb/wanlb.toml as a
# conffile, man pages, docs) and prints the path of the .deb. Installs what it needs: the
# Debian packages through apt (as root), cargo-deb through cargo. Run it again at will: it
# rebuilds what changed and overwrites the package.
#
#   scripts/package.sh        -> target/debian/wanlb_VERSION-1_ARCH.deb
#
# What goes into the package is [package.metadata.deb] in Cargo.toml; the man pages are made
# here, from the binary's own --help, so they cannot drift from it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# help2man writes the man pages; dpkg-shlibdeps works out the C library dependency ($auto)
ensure_tools help2man:help2man dpkg-shlibdeps:dpkg-dev dpkg-deb:dpkg gzip:gzip
ensure_rust

# cargo-deb 3 reads the metadata as written (the systemd-units keys); another major version
# may not
CARGO_DEB_VERSION='^3.8'
if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.'; then
  echo "installing cargo-deb (compiles for a few minutes)" >&2
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

cargo build --release --locked -p wanlb --bin wanlb
bin=target/release/wanlb
version=$("$bin" --version | cut -d' ' -f2)

# The man pages: wanlb(8) and one per subcommand (wanlb-run(8) ...), each from the --help of
# what it documents. A stable date: the last commit's, not today's.
man=target/man
rm -rf "$man"
mkdir -p "$man"
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git rev-parse --git-dir >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi
# subcommands as `wanlb --help` lists them, so a new one gets its page too
subcommands=$("$bin" --help | sed -n '/^Commands:/,/^$/p' | awk 'NF && $1 != "Commands:" && $1 != "help" {print $1}')
see_also=".BR wanlb (8)"
for sub in $subcommands; do see_also+=",
.BR wanlb-$sub (8)"; done
cat >"$man/common.h2m" <<EOF
[FILES]
.TP
.I /etc/wanlb/wanlb.toml
the settings the systemd unit runs wanlb with (a commented example:
.IR /usr/share/doc/wanlb/examples/wanlb.toml )
.TP
.I /run/wanlb
the undo journal: what a running wanlb added, so that a start after a crash, or
.BR "wanlb cleanup" ,
removes it
.TP
.I /var/lib/wanlb
each line's count against its data cap (data_dir), kept across restarts and reboots
[SEE ALSO]
$see_also,
.BR systemctl (1),
.BR journalctl (1),
and
.I /usr/share/doc/wanlb/README.md
EOF
help2man --no-info --section 8 --include "$man/common.h2m" \
  --name "multi-WAN load-balancing NAT gateway" --output "$man/wanlb.8" "$bin"
# help2man names a page after the program it runs: a wanlb-SUB that is `wanlb SUB`
wrappers=$(mktemp -d)
trap 'rm -rf "$wrappers"' EXIT
for sub in $subcommands; do
  cat >"$wrappers/wanlb-$sub" <<EOF
#!/bin/sh
if [ "\$1" = --version ]; then echo "wanlb-$sub $version"; else exec "$PWD/$bin" $sub "\$@"; fi
EOF
  chmod +x "$wrappers/wanlb-$sub"
  summary=$("$bin" --help | awk -v name="$sub" '$1 == name {$1 = ""; sub(/^ +/, ""); print; exit}')
  help2man --no-info --section 8 --include "$man/common.h2m" \
    --name "$summary" --output "$man/wanlb-$sub.8" "$wrappers/wanlb-$sub"
done
rm "$man/common.h2m"
gzip -9n "$man"/*.8

# cargo-deb prints the package's path last
deb=$(cargo deb --no-build --locked -p wanlb | tail -n 1)
echo "$deb"
