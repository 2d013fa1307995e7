# shellcheck shell=bash
# Environment set-up for interop.sh: sourced, not run. Everything here prints what it does to stderr.
#
# Two kinds of environment:
#   host      this machine's own CPython (>= 3.10, shared libpython, NumPy and PyTorch importable).
#             TorchSharp runs here too when libstdc++ provides GLIBCXX_3.4.32.
#   debian13  a Debian 13 (trixie) root file system, built once with debootstrap and cached outside the
#             clone in $INTEROP_CACHE (default /var/cache/interop). Used when the host cannot run
#             TorchSharp (Debian 12: libstdc++ lacks GLIBCXX_3.4.32). Entered with chroot from a private
#             mount namespace, so every bind mount disappears with the process, also when interrupted.
#
# Overrides: INTEROP_PYTHON (the host interpreter), INTEROP_CACHE, INTEROP_DEBIAN_MIRROR,
# INTEROP_ENVIRONMENTS (e.g. "host" or "debian13": which environments `test` runs).

INTEROP_CACHE="${INTEROP_CACHE:-/var/cache/interop}"
ROOT_SUITE="trixie"
# The root's package list; changing it (or ROOT_LAYOUT) builds a new root under a new name.
ROOT_PACKAGES="python3-numpy,python3-torch,python3-torchvision,python3-pytest,libpython3.13,libicu76,ca-certificates"
ROOT_LAYOUT="1"
HOST_TORCHSHARP_GLIBCXX="GLIBCXX_3.4.32"

log() { printf '[interop] %s\n' "$*" >&2; }
die() { printf '[interop] error: %s\n' "$*" >&2; exit 1; }

# ---- host qualification -------------------------------------------------------------------------

# Prints "ok" or the reason the interpreter $1 does not qualify. Imports neither NumPy nor torch.
env_python_check() {
    "$1" - <<'PY' 2>/dev/null || echo "cannot run $1"
import importlib.util, os, sys, sysconfig
problems = []
if sys.version_info < (3, 10):
    problems.append("Python %d.%d is older than 3.10" % sys.version_info[:2])
libdir, name = sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
cands = [os.path.join(libdir, name), os.path.join(libdir, sysconfig.get_config_var("MULTIARCH") or "", name)]
if not sysconfig.get_config_var("Py_ENABLE_SHARED") and not any(os.path.isfile(c) and ".so" in c for c in cands):
    problems.append("no shared libpython")
for mod in ("numpy", "torch"):
    if importlib.util.find_spec(mod) is None:
        problems.append(mod + " missing")
print("ok" if not problems else ", ".join(problems))
PY
}

# The first qualifying host interpreter: $INTEROP_PYTHON, python3 on PATH, /usr/bin/python3.
env_find_host_python() {
    local c
    for c in "${INTEROP_PYTHON:-}" "$(command -v python3 || true)" /usr/bin/python3; do
        [ -n "$c" ] && [ -x "$c" ] || continue
        if [ "$(env_python_check "$c")" = "ok" ]; then echo "$c"; return 0; fi
    done
    return 1
}

env_host_has_glibcxx() {
    local lib
    lib="$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64|libstdc\+\+\.so\.6 .*x86_64/ {print $NF; exit}')"
    [ -n "$lib" ] || lib="$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6/ {print $NF; exit}')"
    [ -n "$lib" ] && grep -qa "$HOST_TORCHSHARP_GLIBCXX" "$lib"
}

# Installs Debian's Python, NumPy, PyTorch, pytest and the shared libpython on an apt-based host.
env_install_host_python() {
    command -v apt-get >/dev/null || return 1
    [ "$(id -u)" = 0 ] || die "no host Python with NumPy and PyTorch, and not root to install them. Run as root, or: sudo apt-get install --no-install-recommends python3-numpy python3-torch python3-pytest libpython3-dev"
    log "host: installing Debian's python3, python3-numpy, python3-torch, python3-pytest and libpython (no recommends)..."
    apt-get update -q >&2 || log "host: apt-get update failed; trying the package lists already here"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-numpy python3-torch python3-pytest >&2
    local ver
    ver="$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "libpython$ver" >&2
}

# pytest runs python/tests; Debian's python3-pytest provides it for the system interpreter.
env_ensure_host_pytest() {
    "$HOST_PYTHON" -c 'import pytest' 2>/dev/null && return 0
    if [ "$HOST_PYTHON" = /usr/bin/python3 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        log "host: installing python3-pytest (for python/tests)..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pytest >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pytest >&2; }
    fi
    "$HOST_PYTHON" -c 'import pytest' 2>/dev/null \
        || die "pytest is missing for $HOST_PYTHON: apt-get install python3-pytest, or $HOST_PYTHON -m pip install pytest"
}

HOST_PYTHON=""
env_host_python() {
    if [ -z "$HOST_PYTHON" ]; then
        HOST_PYTHON="$(env_find_host_python || true)"
    fi
    [ -n "$HOST_PYTHON" ]
}

# ---- the Debian 13 root -------------------------------------------------------------------------

env_root_dir() {
    local key
    key="$(printf '%s|%s|%s' "$ROOT_SUITE" "$ROOT_PACKAGES" "$ROOT_LAYOUT" | sha256sum | cut -c1-12)"
    echo "$INTEROP_CACHE/debian13-$key"
}

# The Debian mirror the host already uses (deb822 or one-line sources), else deb.debian.org.
env_debian_mirror() {
    if [ -n "${INTEROP_DEBIAN_MIRROR:-}" ]; then echo "$INTEROP_DEBIAN_MIRROR"; return; fi
    local m
    m="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && $2 ~ /debian\/?$/ && $2 !~ /security/ {print $2; exit}')"
    [ -n "$m" ] || m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1=="deb" && $2 ~ /debian\/?$/ && $2 !~ /security/ {print $2; exit}')"
    echo "${m:-http://deb.debian.org/debian}"
}

env_require_tool() {  # tool, package
    command -v "$1" >/dev/null && return 0
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        log "installing $2 (needed for the Debian 13 root)..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >&2; }
    fi
    command -v "$1" >/dev/null || die "'$1' is required for the Debian 13 root; install the '$2' package"
}

env_build_root() {
    local dir tmp mirror started
    dir="$(env_root_dir)"
    [ -f "$dir/.interop-ready" ] && return 0
    [ "$(id -u)" = 0 ] || die "this host cannot run TorchSharp (libstdc++ lacks $HOST_TORCHSHARP_GLIBCXX), and building the Debian 13 root needs root. Run as root, or use a host with GCC 13+ libstdc++ (Debian 13, Ubuntu 24.04+, Fedora 39+)"
    env_require_tool unshare util-linux
    env_require_tool chroot coreutils
    env_require_tool debootstrap debootstrap
    mirror="$(env_debian_mirror)"
    tmp="$dir.partial"
    rm -rf "$tmp"
    mkdir -p "$INTEROP_CACHE"
    log "debian13: building the Debian 13 root in $dir from $mirror"
    log "debian13: packages: $ROOT_PACKAGES (about 2-3 minutes and 1.5 GB, once; later runs reuse it)"
    started=$SECONDS
    # In a private mount namespace, so the /proc and /sys mounts debootstrap makes cannot outlive it.
    unshare --mount --propagation private -- \
        debootstrap --variant=minbase --include="$ROOT_PACKAGES" "$ROOT_SUITE" "$tmp" "$mirror" >&2 \
        || { rm -rf "$tmp"; die "debootstrap failed (see above); nothing was kept"; }
    echo "$ROOT_PACKAGES" >"$tmp/.interop-packages"
    touch "$tmp/.interop-ready"
    mv "$tmp" "$dir"
    # Roots built for an older package list are replaced, not kept.
    find "$INTEROP_CACHE" -maxdepth 1 -name 'debian13-*' ! -path "$dir" -exec rm -rf {} + 2>/dev/null || true
    log "debian13: root ready after $((SECONDS - started)) s"
}

# Runs "$@" inside the root, in the repository (mounted at the same path), as root.
env_enter_root() {
    local root dotnet_dir nuget
    root="$(env_root_dir)"
    dotnet_dir="$(dirname "$(readlink -f "$(command -v dotnet)")")"
    nuget="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
    mkdir -p "$nuget"
    ROOT="$root" REPO="$INTEROP_REPO" DOTNET_DIR="$dotnet_dir" NUGET_DIR="$nuget" CERT="${SSL_CERT_FILE:-}" \
    unshare --mount --propagation private -- bash -c '
        set -e
        # /tmp first: the repository, the SDK or the NuGet folder may live under /tmp and are mounted on top.
        mount -t tmpfs -o mode=1777 tmpfs "$ROOT/tmp"
        mount -t proc proc "$ROOT/proc"
        mount --rbind /dev "$ROOT/dev"
        mount --rbind /sys "$ROOT/sys"
        for d in "$DOTNET_DIR" "$NUGET_DIR" "$REPO"; do mkdir -p "$ROOT$d"; mount --bind "$d" "$ROOT$d"; done
        cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
        # HTTPS inside must trust what the host trusts (extra or corporate authorities).
        if [ -n "$CERT" ] && [ -f "$CERT" ]; then mkdir -p "$ROOT$(dirname "$CERT")"; cp -L "$CERT" "$ROOT$CERT"; fi
        exec chroot "$ROOT" /usr/bin/env -i \
            HOME=/root TERM="${TERM:-dumb}" CI="${CI:-}" LANG=C.UTF-8 \
            PATH="$DOTNET_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            DOTNET_ROOT="$DOTNET_DIR" NUGET_PACKAGES="$NUGET_DIR" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 \
            DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 SSL_CERT_FILE="$CERT" PYTHONDONTWRITEBYTECODE=1 \
            INTEROP_PYTHON=/usr/bin/python3 INTEROP_ENVIRONMENT=debian13 INTEROP_BENCH_ITERATIONS="${INTEROP_BENCH_ITERATIONS:-}" \
            /bin/bash -c "cd \"\$0\" && exec \"\$@\"" "$REPO" "$@"
    ' _ "$@"
}

# ---- environments -------------------------------------------------------------------------------

ENV_NEEDS_ROOT=""
env_prepare_all() {
    command -v dotnet >/dev/null || die "the .NET SDK (dotnet, 10.0 or later) is required: https://dot.net/download"
    if ! env_host_python; then
        log "host: no CPython >= 3.10 with a shared libpython, NumPy and PyTorch found (INTEROP_PYTHON, python3 on PATH, /usr/bin/python3)"
        env_install_host_python || die "cannot install Python packages on this host; install CPython >= 3.10 with NumPy and PyTorch and set INTEROP_PYTHON"
        env_host_python || die "host: still no qualifying Python after installing; set INTEROP_PYTHON to one with NumPy and PyTorch"
    fi
    log "host: Python $("$HOST_PYTHON" -c 'import sys; print(sys.version.split()[0])') at $HOST_PYTHON"
    if env_host_has_glibcxx; then
        log "host: libstdc++ has $HOST_TORCHSHARP_GLIBCXX: TorchSharp runs on the host"
    else
        log "host: libstdc++ lacks $HOST_TORCHSHARP_GLIBCXX (TorchSharp cannot load here): using the Debian 13 root for TorchSharp"
        ENV_NEEDS_ROOT=1
        env_build_root
    fi
}

env_list() {
    local wanted="${INTEROP_ENVIRONMENTS:-}"
    if [ -n "$wanted" ]; then echo "$wanted"; return; fi
    if [ -n "$ENV_NEEDS_ROOT" ]; then echo "debian13 host"; else echo "host"; fi
}

env_primary() { if [ -n "$ENV_NEEDS_ROOT" ]; then echo debian13; else echo host; fi; }

env_run_in() {  # environment, command...
    local e="$1"; shift
    case "$e" in
        host) (cd "$INTEROP_REPO" && INTEROP_PYTHON="$HOST_PYTHON" INTEROP_ENVIRONMENT=host "$@") ;;
        debian13) env_build_root; env_enter_root "$@" ;;
        *) die "unknown environment '$e' (use host or debian13)" ;;
    esac
}

env_build() {
    log "building Interop.sln (Release; the first build restores NuGet packages, TorchSharp's libtorch is ~600 MB)..."
    (cd "$INTEROP_REPO" && dotnet build Interop.sln -c Release -nologo -v:minimal -clp:NoSummary) >&2 \
        || die "build failed (see above)"
}

env_build_bench() {
    log "building the benchmarks (Release)..."
    (cd "$INTEROP_REPO" && dotnet build bench/Interop.Benchmarks/Interop.Benchmarks.csproj -c Release -nologo -v:minimal -clp:NoSummary) >&2 \
        || die "benchmark build failed (see above)"
}

# Runs NUnit (all test projects) and pytest in one environment; prints "passed failed skipped" last.
env_test_one() {
    local e="$1" out rc=0
    out="$(mktemp)"
    log "$e: running the NUnit suites..."
    env_run_in "$e" dotnet test Interop.sln -c Release --no-build -nologo -v:quiet \
        --logger "console;verbosity=normal" 2>&1 | grep --line-buffered -vE '^\s+Passed ' | tee "$out" >&2 || rc=1
    log "$e: running pytest on python/..."
    env_run_in "$e" bash -c 'cd python && "${INTEROP_PYTHON:-python3}" -m pytest -q -p no:cacheprovider tests' 2>&1 | tee -a "$out" >&2 || rc=1
    "${HOST_PYTHON:-python3}" "$INTEROP_REPO/tools/summarize_tests.py" "$out" "$rc" || echo "0 1 0"
    rm -f "$out"
}

env_test_all() {
    local e summary="" failures="" total_p=0 total_f=0 total_s=0 result counts p f s started
    for e in $(env_list); do
        started=$SECONDS
        result="$(env_test_one "$e")"
        counts="$(tail -n 1 <<<"$result")"
        read -r p f s <<<"$counts"
        summary+="$(printf '%-9s %d passed, %d failed, %d skipped (%d s)' "$e:" "$p" "$f" "$s" $((SECONDS - started)))"$'\n'
        failures+="$(grep '^FAILED ' <<<"$result" | sed "s/^/  $e: /" || true)"$'\n'
        total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + s))
    done
    echo
    echo "== test summary =="
    printf '%s' "$summary"
    echo "total: $total_p passed, $total_f failed, $total_s skipped"
    if grep -q FAILED <<<"$failures"; then echo "failed tests:"; grep FAILED <<<"$failures"; fi
    [ "$total_f" -eq 0 ] && [ "$total_p" -gt 0 ]
}
