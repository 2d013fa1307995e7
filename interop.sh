#!/usr/bin/env bash
# Interop's one entry point for people and CI. Each command sets up what it needs, saying what it does.
#
#   ./interop.sh demo     the seed demo: NumPy -> torch.from_numpy -> Tensor.numpy() -> .NET, zero-copy
#   ./interop.sh test     the whole test suite (NUnit + pytest) in every environment, with a summary
#   ./interop.sh doctor   what the runtime finds in each environment
#   ./interop.sh pack     the NuGet packages (Interop, Interop.TorchSharp, Interop.Tool, ...) into artifacts/packages
#   ./interop.sh bench    the BenchmarkDotNet suite (pass BenchmarkDotNet arguments after it)
#   ./interop.sh shell    a shell inside the Debian 13 environment (on hosts that need one); -c CMD runs CMD
#
# Environments (see docs/environments.md): the host itself when it qualifies, and otherwise a cached
# Debian 13 root file system entered through a private mount namespace.
set -euo pipefail
INTEROP_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# What the user set, before the environment set-up chooses a host interpreter for the test runs.
INTEROP_USER_PYTHON="${INTEROP_PYTHON:-}"
# shellcheck source=tools/environment.sh
source "$INTEROP_REPO/tools/environment.sh"

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

cmd="${1:-demo}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)   env_prepare_all; env_build; env_run_in "$(env_primary)" dotnet "src/Interop.Cli/bin/Release/net10.0/Interop.Cli.dll" demo "$@" ;;
    # doctor runs the library's own discovery, as an application (or the interop tool) would: INTEROP_PYTHON only
    # when the user set it, so it tells the same story inside and outside this script.
    doctor) env_prepare_all; env_build
            if [ -n "$INTEROP_USER_PYTHON" ]; then doctor_env=("INTEROP_PYTHON=$INTEROP_USER_PYTHON"); else doctor_env=(-u INTEROP_PYTHON); fi
            for e in $(env_list); do env_run_in "$e" env "${doctor_env[@]}" dotnet "src/Interop.Cli/bin/Release/net10.0/Interop.Cli.dll" doctor "$@" || true; done ;;
    pack)   log "packing into $INTEROP_REPO/artifacts/packages (extra arguments go to dotnet pack, e.g. -p:VersionSuffix=ci.1)..."
            (cd "$INTEROP_REPO" && dotnet pack Interop.sln -c Release -nologo -v:minimal -clp:NoSummary -o artifacts/packages "$@") >&2 || die "pack failed (see above)"
            ls -1 "$INTEROP_REPO/artifacts/packages" ;;
    test)   env_prepare_all; env_ensure_host_pytest; env_build; env_test_all ;;
    bench)  env_prepare_all; env_build_bench; env_run_in "$(env_primary)" dotnet "bench/Interop.Benchmarks/bin/Release/net10.0/Interop.Benchmarks.dll" "$@" ;;
    shell)  env_prepare_all; env_run_in "$(env_primary)" bash "$@" ;;
    -h|--help|help) usage ;;
    *) echo "interop.sh: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
esac
