#!/usr/bin/env bash
# Interop's one entry point for people and CI. Each command sets up what it needs, saying what it does.
#
#   ./interop.sh demo     the seed demo: NumPy -> torch.from_numpy -> Tensor.numpy() -> .NET, zero-copy
#   ./interop.sh test     the whole test suite (NUnit + pytest) in every environment, with a summary
#   ./interop.sh doctor   what the runtime finds in each environment
#   ./interop.sh bench    the BenchmarkDotNet suite (pass BenchmarkDotNet arguments after it)
#   ./interop.sh shell    a shell inside the Debian 13 environment (on hosts that need one); -c CMD runs CMD
#
# Environments (see docs/environments.md): the host itself when it qualifies, and otherwise a cached
# Debian 13 root file system entered through a private mount namespace.
set -euo pipefail
INTEROP_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/environment.sh
source "$INTEROP_REPO/tools/environment.sh"

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

cmd="${1:-demo}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)   env_prepare_all; env_build; env_run_in "$(env_primary)" dotnet "src/Interop.Cli/bin/Release/net10.0/Interop.Cli.dll" demo "$@" ;;
    doctor) env_prepare_all; env_build; for e in $(env_list); do env_run_in "$e" dotnet "src/Interop.Cli/bin/Release/net10.0/Interop.Cli.dll" doctor "$@" || true; done ;;
    test)   env_prepare_all; env_ensure_host_pytest; env_build; env_test_all ;;
    bench)  env_prepare_all; env_build_bench; env_run_in "$(env_primary)" dotnet "bench/Interop.Benchmarks/bin/Release/net10.0/Interop.Benchmarks.dll" "$@" ;;
    shell)  env_prepare_all; env_run_in "$(env_primary)" bash "$@" ;;
    -h|--help|help) usage ;;
    *) echo "interop.sh: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
esac
