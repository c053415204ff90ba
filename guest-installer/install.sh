#!/bin/sh
# archctl guest installer: sets up a fresh Linux guest (Colima/Lima VM, Alpine docker
# host, cloud VM) in one command. See guest-installer/README.md.
#
#   1. emulators from the distribution's packages (skipped when already installed)
#   2. the archctl binary into PREFIX (atomic; skipped when the same file is there)
#   3. the default /etc/archctl/config.toml (never overwrites an existing one)
#   4. the boot service (archctl service install)
#   4b. bash, zsh and fish completions and the man page (archctl completions, archctl man)
#   5. archctl boot (the configuration, as at every boot), then archctl status (not with --root)
#
# boot2docker (os-release ID=boot2docker) keeps only /var/lib/boot2docker across
# reboots (its persistent disk; everything else is tmpfs) and has no qemu packages: the
# binary, the config and the emulator directory go to /var/lib/boot2docker/archctl/, and
# the boot service is a line in /var/lib/boot2docker/bootlocal.sh that names that config.
#
# Idempotent: a second run changes nothing and says so.
set -eu

PROG=install.sh

usage() {
	cat <<'EOF'
Usage: install.sh [--binary PATH | --url URL --sha256 HEX] [OPTIONS]

Set up archctl on this guest: qemu-user emulators from the distribution's packages,
the archctl binary, the default /etc/archctl/config.toml, the boot service, and
`archctl boot` (the configuration, applied now). Running it again changes nothing.

Source of the archctl binary (default: the one already installed in PREFIX):
  --binary PATH     install this archctl binary
  --url URL         download it (curl or wget); needs --sha256
  --sha256 HEX      the binary's sha256, checked before anything is installed
                    (mandatory with --url, optional with --binary)

Options:
  --prefix DIR      where the binary goes (default /usr/local/bin; on boot2docker
                    /var/lib/boot2docker/archctl, its persistent disk)
  --root DIR        set up another root (an image being built): everything is written
                    under DIR; nothing is run that would change this running system
                    (no `archctl enable`; packages only through root-aware package
                    manager options: `apk --root`, `dnf --installroot`; apt-get has
                    none, so on Debian/Ubuntu roots the package step is skipped);
                    a link in DIR that leads out of it (or nowhere) is refused
  --init INIT       auto, systemd, openrc or sysv (default auto), for
                    `archctl service install`
  --no-emulators    do not install emulator packages
  --no-enable       do not register now (`archctl boot`)
  --force           pass --force to `archctl enable --all` and set `force = true` in
                    a newly written config: replace differing qemu-* entries (e.g.
                    those registered from the distribution's /usr/lib/binfmt.d)
  --dry-run         print every step as a `+ ` command line, change nothing
  -h, --help        this help

On boot2docker (os-release ID=boot2docker) everything goes to the persistent disk:
the binary to /var/lib/boot2docker/archctl/archctl, the config to
/var/lib/boot2docker/archctl/config.toml (with emulator_dir =
/var/lib/boot2docker/archctl/emulators, where the static qemu-<arch>-static files go:
boot2docker has no packages for them), and the boot line, with --config naming that
config, to /var/lib/boot2docker/bootlocal.sh.

Errors are one line, `install.sh: error: <what>`, and a non-zero exit (2 for usage).
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}
usage_error() {
	printf '%s: error: %s (see --help)\n' "$PROG" "$*" >&2
	exit 2
}

# Shell-quote one word for display.
quote() {
	case $1 in
	'') printf "''" ;;
	*[!A-Za-z0-9_./:=@%+,-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
	*) printf '%s' "$1" ;;
	esac
}

# Print a command line prefixed with `+ `.
show() {
	line='+'
	for word in "$@"; do
		line="$line $(quote "$word")"
	done
	printf '%s\n' "$line"
}

# Print, then run unless --dry-run; a failure is a one-line error.
run() {
	show "$@"
	[ "$DRY_RUN" = 1 ] && return 0
	"$@" || die "command failed (exit $?): $*"
}

# --- options ---------------------------------------------------------------------

BINARY=
URL=
SHA256=
PREFIX=/usr/local/bin
PREFIX_GIVEN=0
ROOT=
INIT=auto
NO_EMULATORS=0
NO_ENABLE=0
FORCE=0
DRY_RUN=0

need_value() {
	[ "$2" -ge 2 ] || usage_error "$1 needs a value"
}

while [ $# -gt 0 ]; do
	case $1 in
	--binary)
		need_value "$1" $#
		BINARY=$2
		shift 2
		;;
	--binary=*)
		BINARY=${1#*=}
		shift
		;;
	--url)
		need_value "$1" $#
		URL=$2
		shift 2
		;;
	--url=*)
		URL=${1#*=}
		shift
		;;
	--sha256)
		need_value "$1" $#
		SHA256=$2
		shift 2
		;;
	--sha256=*)
		SHA256=${1#*=}
		shift
		;;
	--prefix)
		need_value "$1" $#
		PREFIX=$2
		PREFIX_GIVEN=1
		shift 2
		;;
	--prefix=*)
		PREFIX=${1#*=}
		PREFIX_GIVEN=1
		shift
		;;
	--root)
		need_value "$1" $#
		ROOT=$2
		shift 2
		;;
	--root=*)
		ROOT=${1#*=}
		shift
		;;
	--init)
		need_value "$1" $#
		INIT=$2
		shift 2
		;;
	--init=*)
		INIT=${1#*=}
		shift
		;;
	--no-emulators)
		NO_EMULATORS=1
		shift
		;;
	--no-enable)
		NO_ENABLE=1
		shift
		;;
	--force)
		FORCE=1
		shift
		;;
	--dry-run)
		DRY_RUN=1
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*) usage_error "unknown option: $1" ;;
	esac
done

[ -z "$BINARY" ] || [ -z "$URL" ] || usage_error "--binary and --url exclude each other"
[ -z "$URL" ] || [ -n "$SHA256" ] ||
	usage_error "--url needs --sha256 HEX (the checksum of the archctl binary it serves)"
if [ -n "$SHA256" ]; then
	[ -n "$BINARY$URL" ] || usage_error "--sha256 checks --url or --binary: give one of them"
	SHA256=$(printf '%s' "$SHA256" | tr 'A-F' 'a-f')
	case $SHA256 in
	*[!0-9a-f]*) usage_error "--sha256 must be 64 hexadecimal digits" ;;
	esac
	[ "${#SHA256}" -eq 64 ] || usage_error "--sha256 must be 64 hexadecimal digits"
fi
case $INIT in
auto | systemd | openrc | sysv) ;;
*) usage_error "--init must be auto, systemd, openrc or sysv, not \"$INIT\"" ;;
esac
case $PREFIX in
/*) PREFIX=${PREFIX%/} ;;
*) usage_error "--prefix must be an absolute path, not \"$PREFIX\"" ;;
esac
[ -n "$PREFIX" ] || PREFIX=/

# ROOT is "" for the running system, else an absolute directory without a trailing /.
if [ -n "$ROOT" ]; then
	[ -d "$ROOT" ] || die "--root $ROOT: not a directory"
	ROOT=$(CDPATH='' cd -- "$ROOT" && pwd -P) || die "--root $ROOT: cannot resolve the directory"
	[ "$ROOT" != / ] || ROOT=
fi
SERVICE_ROOT=${ROOT:-/}

if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
	die "must run as root (or with --dry-run to see the steps, or --root DIR to set up another root)"
fi

# --- 1. the distribution -----------------------------------------------------------

OS_RELEASE=
for f in "$ROOT/etc/os-release" "$ROOT/usr/lib/os-release"; do
	if [ -f "$f" ]; then
		OS_RELEASE=$f
		break
	fi
done

# A key of os-release, unquoted (parsed, never sourced: it may belong to another root).
os_release() {
	[ -n "$OS_RELEASE" ] || return 0
	sed -n "s/^$1=//p" "$OS_RELEASE" | head -n 1 |
		sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\\(.*\\)'\$/\\1/"
}

OS_ID=$(os_release ID)
OS_LIKE=$(os_release ID_LIKE)
OS_NAME=$(os_release PRETTY_NAME)
FAMILY=unknown
for id in $(printf '%s %s' "$OS_ID" "$OS_LIKE" | tr -c 'A-Za-z0-9._-' ' '); do
	case $id in
	debian | ubuntu | raspbian)
		FAMILY=debian
		break
		;;
	alpine)
		FAMILY=alpine
		break
		;;
	boot2docker)
		FAMILY=boot2docker
		break
		;;
	fedora | rhel | centos | rocky | almalinux | ol | amzn)
		FAMILY=fedora
		break
		;;
	esac
done
if [ -z "$OS_RELEASE" ]; then
	DISTRO="unknown (no $ROOT/etc/os-release)"
else
	DISTRO="${OS_NAME:-${OS_ID:-unknown}} (ID=${OS_ID:-?}${OS_LIKE:+, ID_LIKE=$OS_LIKE})"
fi
say "distribution: $DISTRO"
if [ "$FAMILY" = unknown ] && [ "$NO_EMULATORS" = 0 ]; then
	die "unsupported distribution $DISTRO: install qemu-user emulators (static) yourself and rerun with --no-emulators"
fi

# boot2docker: everything on the persistent disk (see the header).
B2D_DIR=/var/lib/boot2docker/archctl
CONFIG_PATH=/etc/archctl/config.toml
# The --config the boot service passes (empty: the default path).
SERVICE_CONFIG=
EMULATOR_DIR=
if [ "$FAMILY" = boot2docker ]; then
	[ "$PREFIX_GIVEN" = 1 ] || PREFIX=$B2D_DIR
	CONFIG_PATH=$B2D_DIR/config.toml
	SERVICE_CONFIG=$CONFIG_PATH
	EMULATOR_DIR=$B2D_DIR/emulators
fi

DEST_DIR=$ROOT$PREFIX
DEST=${DEST_DIR%/}/archctl
INSTALLED=${PREFIX%/}/archctl
CONFIG=$ROOT$CONFIG_PATH
CHANGED=0
# Completions and the man page go to the share directory next to PREFIX (for
# /usr/local/bin: /usr/local/share, where bash-completion, zsh, fish and man look);
# none for a PREFIX that does not end in /bin.
case $PREFIX in
*/bin) SHARE=${PREFIX%/bin}/share ;;
*) SHARE= ;;
esac
# FILE (under SHARE) and the archctl command that prints it.
GENERATED='bash-completion/completions/archctl:completions bash
zsh/site-functions/_archctl:completions zsh
fish/vendor_completions.d/archctl.fish:completions fish
man/man1/archctl.1:man'

# Everything written under --root stays there: a link in the root (usr/local, etc,
# etc/archctl, etc/systemd/system, etc/rc.local...) that leads out of it would send the
# binary, the config or the service onto this machine. So before the first write, each
# component of each path this script or `archctl service install` may write is checked
# as this machine resolves it: a link that leads outside the root, or nowhere, is
# refused (naming it), and nothing is written.
check_in_root() { # PATH (relative to ROOT)
	[ -n "$ROOT" ] || return 0
	p=$ROOT
	rest=$1
	while [ -n "$rest" ]; do
		c=${rest%%/*}
		case $rest in
		*/*) rest=${rest#*/} ;;
		*) rest= ;;
		esac
		[ -n "$c" ] || continue
		p=$p/$c
		if [ -L "$p" ]; then
			to=$(readlink -- "$p") || to='?'
			[ -e "$p" ] || die "$p is a symbolic link to $to, which does not exist: replace it by a directory or file, or point it inside $ROOT, then rerun"
			real=$(readlink -f -- "$p") || die "$p: cannot resolve the symbolic link (readlink -f)"
			case $real in
			"$ROOT" | "$ROOT"/*) ;;
			*) die "$p is a symbolic link to $to, which leads outside the root $ROOT: replace it by a directory, or by a relative link inside $ROOT, then rerun" ;;
			esac
		elif [ ! -e "$p" ]; then
			return 0
		fi
	done
}

# The enabling links archctl makes are replaced, never followed: only their directories.
check_in_root "${PREFIX#/}/archctl"
[ -z "$EMULATOR_DIR" ] || check_in_root "${EMULATOR_DIR#/}"
for path in "${CONFIG_PATH#/}" \
	etc/systemd/system/archctl.service etc/systemd/system/multi-user.target.wants \
	etc/init.d/archctl etc/runlevels/default \
	etc/rc.local var/lib/boot2docker/bootlocal.sh var/lib/archctl/service-install.json; do
	check_in_root "$path"
done
if [ -n "$SHARE" ]; then
	for rel in $(printf '%s\n' "$GENERATED" | cut -d: -f1); do
		check_in_root "${SHARE#/}/$rel"
	done
fi
[ "$DRY_RUN" = 0 ] || say "dry run: nothing is changed"
[ -z "$ROOT" ] || say "setting up the root $ROOT (this running system is not changed)"

WORK=
TMP_BIN=
TMP_GEN=
cleanup() {
	[ -z "$TMP_BIN" ] || rm -f "$TMP_BIN"
	[ -z "$TMP_GEN" ] || rm -f "$TMP_GEN" "$TMP_GEN.list"
	[ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# --- 2. the archctl binary to install ----------------------------------------------

sha256_of() {
	command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found: needed to check --sha256"
	sha256sum "$1" | cut -d ' ' -f 1
}

check_sha256() { # FILE WHAT
	got=$(sha256_of "$1")
	[ "$got" = "$SHA256" ] || die "sha256 mismatch for $2: expected $SHA256, got $got; nothing was installed"
	say "sha256 of $2 matches"
}

SRC=
if [ -n "$URL" ]; then
	if [ "$DRY_RUN" = 1 ]; then
		SRC="${TMPDIR:-/tmp}/archctl-install.XXXXXX/archctl"
	else
		WORK=$(mktemp -d "${TMPDIR:-/tmp}/archctl-install.XXXXXX") || die "cannot create a temporary directory"
		SRC=$WORK/archctl
	fi
	if command -v curl >/dev/null 2>&1; then
		run curl -fsSL --retry 2 -o "$SRC" "$URL"
	elif command -v wget >/dev/null 2>&1; then
		run wget -q -O "$SRC" "$URL"
	else
		die "neither curl nor wget found: needed for --url"
	fi
	if [ "$DRY_RUN" = 1 ]; then
		show sha256sum "$SRC"
		say "would check that it is $SHA256"
	else
		check_sha256 "$SRC" "$URL"
		chmod 0755 "$SRC" || die "cannot chmod $SRC"
	fi
elif [ -n "$BINARY" ]; then
	[ -f "$BINARY" ] || die "--binary $BINARY: no such file"
	SRC=$BINARY
	[ -z "$SHA256" ] || check_sha256 "$SRC" "$BINARY"
elif [ -f "$DEST" ]; then
	SRC=$DEST
	say "using the installed $DEST (give --binary or --url to install another)"
else
	die "no archctl at $DEST: give --binary PATH or --url URL --sha256 HEX"
fi

# Does FILE run here? (A binary for another root may be of another architecture.)
runs_here() {
	[ -f "$1" ] && "$1" --version >/dev/null 2>&1
}

# ARCHCTL runs the config and service steps: the installed binary, or, for a root whose
# archctl does not run on this machine, the host's archctl. CHECK runs read-only checks
# (also in --dry-run, before anything is installed), or is empty.
ARCHCTL=$DEST
CHECK=
if runs_here "$SRC"; then
	CHECK=$SRC
	say "archctl: $("$SRC" --version 2>/dev/null | head -n 1)"
elif [ "$DRY_RUN" = 1 ] && [ -n "$URL" ]; then
	# Not downloaded: the read-only checks use the installed archctl, if any.
	! runs_here "$DEST" || CHECK=$DEST
elif [ -z "$ROOT" ]; then
	die "$SRC does not run on this machine (wrong architecture, not an archctl binary, or on a noexec mount: set TMPDIR)"
elif host=$(command -v archctl 2>/dev/null) && runs_here "$host"; then
	ARCHCTL=$host
	CHECK=$host
	say "$SRC does not run on this machine (another architecture?): using $host for the config and service steps"
else
	die "$SRC does not run on this machine (another architecture?) and no archctl is on PATH to write the config and service with"
fi

# --- 3. emulators ------------------------------------------------------------------

EMULATOR_ARCHS="x86_64 aarch64 arm riscv64 s390x ppc64le i386"
ALPINE_PACKAGES=
for a in $EMULATOR_ARCHS; do
	ALPINE_PACKAGES="$ALPINE_PACKAGES qemu-$a"
done

# All emulators of the list exist in the root as FILE_PREFIX<arch>FILE_SUFFIX.
have_files() { # PREFIX SUFFIX
	for a in $EMULATOR_ARCHS; do
		[ -e "$ROOT$1$a$2" ] || return 1
	done
}

emulators_present() {
	case $FAMILY in
	debian)
		if command -v dpkg-query >/dev/null 2>&1 && [ -d "$ROOT/var/lib/dpkg" ]; then
			# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
			status=$(dpkg-query "--admindir=$ROOT/var/lib/dpkg" -W -f '${db:Status-Abbrev}' qemu-user-static 2>/dev/null) || status=
			case $status in ii*) return 0 ;; esac
		fi
		have_files /usr/bin/qemu- -static
		;;
	fedora)
		if command -v rpm >/dev/null 2>&1 && { [ -d "$ROOT/var/lib/rpm" ] || [ -d "$ROOT/usr/lib/sysimage/rpm" ]; } &&
			rpm --root "$SERVICE_ROOT" -q --quiet qemu-user-static 2>/dev/null; then
			return 0
		fi
		have_files /usr/bin/qemu- -static
		;;
	alpine) have_files /usr/bin/qemu- '' ;;
	*) return 1 ;;
	esac
}

need_tool() { # TOOL
	command -v "$1" >/dev/null 2>&1 && return 0
	[ "$DRY_RUN" = 1 ] && return 0
	if [ -n "$ROOT" ]; then
		die "$1 not found on this machine: needed to install the emulators into $ROOT (or use --no-emulators)"
	fi
	die "$1 not found: cannot install the emulators (use --no-emulators and install them yourself)"
}

if [ "$NO_EMULATORS" = 1 ]; then
	say "emulators: skipped (--no-emulators)"
elif [ "$FAMILY" = boot2docker ]; then
	# No package has them: the directory the config names, on the persistent disk.
	if [ ! -d "$ROOT$EMULATOR_DIR" ]; then
		run mkdir -p "$ROOT$EMULATOR_DIR"
		CHANGED=1
	fi
	found=$(find "$ROOT$EMULATOR_DIR" -maxdepth 1 -name 'qemu-*' 2>/dev/null | wc -l | tr -d ' ')
	say "emulators: boot2docker has no packages for them; ${found:-0} in $ROOT$EMULATOR_DIR (the config's emulator_dir, on the persistent disk): put static qemu-<arch>-static files there, e.g. with \`$INSTALLED emulators install --from BUNDLE --sha256 HEX --dest $EMULATOR_DIR\` (a bundle from \`archctl emulators pack\` on a machine that has them)"
elif emulators_present; then
	say "emulators: already installed"
else
	case $FAMILY in
	debian)
		if [ -n "$ROOT" ]; then
			say "emulators: skipped: apt-get cannot install into another root; install qemu-user-static in $ROOT yourself (e.g. \`chroot $ROOT apt-get install -y --no-install-recommends qemu-user-static\`, or mmdebstrap --include=qemu-user-static)"
		else
			need_tool apt-get
			run env DEBIAN_FRONTEND=noninteractive apt-get update
			run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends qemu-user-static
			CHANGED=1
		fi
		;;
	alpine)
		need_tool apk
		# Alpine's qemu-<arch> packages are statically linked.
		# shellcheck disable=SC2086 # the package list splits on purpose
		if [ -n "$ROOT" ]; then
			run apk --root "$ROOT" add --no-cache $ALPINE_PACKAGES
		else
			run apk add --no-cache $ALPINE_PACKAGES
		fi
		CHANGED=1
		;;
	fedora)
		need_tool dnf
		if [ -n "$ROOT" ]; then
			run dnf "--installroot=$ROOT" install -y qemu-user-static
		else
			run dnf install -y qemu-user-static
		fi
		CHANGED=1
		;;
	esac
fi

# --- 4. the binary -----------------------------------------------------------------

same_file() { # A B
	if command -v cmp >/dev/null 2>&1; then
		cmp -s "$1" "$2"
	else
		[ "$(sha256_of "$1")" = "$(sha256_of "$2")" ]
	fi
}

if [ "$SRC" = "$DEST" ]; then
	:
elif [ -f "$DEST" ] && [ -x "$DEST" ] && [ -f "$SRC" ] && same_file "$SRC" "$DEST"; then
	say "archctl binary: already in place ($DEST)"
else
	# A temporary name in the target directory, then one rename: never a half-written
	# archctl at DEST.
	run mkdir -p "$DEST_DIR"
	[ "$DRY_RUN" = 1 ] || TMP_BIN=${DEST_DIR%/}/.archctl.new.$$
	show cp "$SRC" "${DEST_DIR%/}/.archctl.new.$$"
	# The temporary name is ours: whatever is there (a planted link) goes, never followed.
	[ "$DRY_RUN" = 1 ] || rm -f -- "$TMP_BIN" || die "cannot remove $TMP_BIN"
	[ "$DRY_RUN" = 1 ] || cp "$SRC" "$TMP_BIN" || die "cannot copy $SRC to $DEST_DIR"
	run chmod 0755 "${DEST_DIR%/}/.archctl.new.$$"
	run mv -f "${DEST_DIR%/}/.archctl.new.$$" "$DEST"
	TMP_BIN=
	CHANGED=1
fi

# --- 5. the configuration ----------------------------------------------------------

if [ -e "$CONFIG" ]; then
	say "config: already in place ($CONFIG, left as it is)"
	if [ "$FORCE" = 1 ] && ! grep -q '^force = true' "$CONFIG" 2>/dev/null; then
		say "note: --force is not written into an existing config: set \`force = true\` in $CONFIG for \`archctl boot\` to do the same"
	fi
else
	run "$ARCHCTL" config init --output "$CONFIG"
	# edit_config SED-SCRIPT WHAT: the new config rewritten in place (keeping its mode).
	edit_config() {
		show sed -i "$1" "$CONFIG"
		[ "$DRY_RUN" = 0 ] || return 0
		if ! text=$(sed "$1" "$CONFIG") || ! printf '%s\n' "$text" >"$CONFIG"; then
			die "cannot set $2 in $CONFIG"
		fi
		grep -q "^$2" "$CONFIG" || die "cannot set $2 in $CONFIG (no such line in the default config)"
	}
	[ "$FORCE" = 0 ] || edit_config 's/^force = false$/force = true/' 'force = true'
	[ -z "$EMULATOR_DIR" ] ||
		edit_config "s|^# emulator_dir = .*\$|emulator_dir = \"$EMULATOR_DIR\"|" "emulator_dir = \"$EMULATOR_DIR\""
	CHANGED=1
fi

# --- 6. the boot service -----------------------------------------------------------

# The boot command names the config when it is not at the default path.
if [ -n "$SERVICE_CONFIG" ]; then set -- --config "$SERVICE_CONFIG"; else set --; fi
if [ -n "$CHECK" ] && "$CHECK" "$@" service status --root "$SERVICE_ROOT" --init "$INIT" --binary "$INSTALLED" 2>/dev/null |
	grep -q 'installed, up to date'; then
	say "boot service: already in place"
else
	run "$ARCHCTL" "$@" service install --root "$SERVICE_ROOT" --init "$INIT" --binary "$INSTALLED"
	CHANGED=1
fi

# --- 6b. completions and the man page ---------------------------------------------

# Each file is what the archctl being installed prints (`archctl completions SHELL`,
# `archctl man`), written only when it differs: a temporary name, then one mv.
if [ -z "$SHARE" ]; then
	say "completions and man page: skipped (--prefix $PREFIX does not end in /bin)"
else
	GEN_CHANGED=0
	GEN_TMP=$(mktemp "${TMPDIR:-/tmp}/archctl-gen.XXXXXX") || die "cannot create a temporary file"
	TMP_GEN=$GEN_TMP
	printf '%s\n' "$GENERATED" >"$GEN_TMP.list"
	while IFS=: read -r rel args; do
		f=$ROOT$SHARE/$rel
		# shellcheck disable=SC2086 # args is a word list of our own
		if [ -n "$CHECK" ] && "$CHECK" $args >"$GEN_TMP" 2>/dev/null && [ -f "$f" ] && same_file "$GEN_TMP" "$f"; then
			continue
		fi
		GEN_CHANGED=1
		run mkdir -p "${f%/*}"
		printf '+ %s %s > %s\n' "$(quote "$ARCHCTL")" "$args" "$(quote "$f")"
		[ "$DRY_RUN" = 1 ] && continue
		new=${f%/*}/.${f##*/}.new.$$
		rm -f -- "$new" || die "cannot remove $new"
		# shellcheck disable=SC2086
		"$ARCHCTL" $args >"$new" || { rm -f -- "$new"; die "archctl $args failed"; }
		chmod 0644 "$new" || die "cannot chmod $new"
		mv -f "$new" "$f" || die "cannot write $f"
	done <"$GEN_TMP.list"
	rm -f -- "$GEN_TMP" "$GEN_TMP.list"
	TMP_GEN=
	if [ "$GEN_CHANGED" = 0 ]; then
		say "completions and man page: already in place ($ROOT$SHARE)"
	else
		CHANGED=1
	fi
fi

# --- 7. register and show ----------------------------------------------------------

if [ -n "$ROOT" ]; then
	say "not run with --root (it would change this running system): $(quote "$INSTALLED") --config $(quote "$CONFIG") boot; the boot service runs \`archctl boot\` when $ROOT boots"
else
	if [ "$NO_ENABLE" = 1 ]; then
		say "enable: skipped (--no-enable)"
	elif [ "$FORCE" = 1 ]; then
		show "$ARCHCTL" enable --all --force
		[ "$DRY_RUN" = 1 ] || "$ARCHCTL" enable --all --force || die "archctl enable --all --force failed (see above)"
	else
		# What the boot service runs at every boot: the configuration just written,
		# with distribution-registered entries left alone (reported, not fatal).
		show "$ARCHCTL" --config "$CONFIG" boot
		[ "$DRY_RUN" = 1 ] || "$ARCHCTL" --config "$CONFIG" boot ||
			die "archctl boot failed (see above)"
	fi
	run "$ARCHCTL" status
fi

if [ "$DRY_RUN" = 1 ]; then
	say "dry run done: nothing was changed"
elif [ "$CHANGED" = 0 ]; then
	say "done: everything was already in place, nothing was installed or written"
else
	say "done"
fi
