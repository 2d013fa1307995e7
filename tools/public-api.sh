#!/usr/bin/env bash
# Records a project's public API in its PublicAPI.Unshipped.txt (Microsoft.CodeAnalysis.PublicApiAnalyzers).
#   tools/public-api.sh src/Interop            adds every public symbol the analyzer reports as undeclared (RS0016)
# Review the diff: a line added is new public API; a removal the analyzer reports (RS0017) is a breaking change and
# is NOT applied by this script: restore the member, or delete its line by hand if the break is intended.
# At a release, move the lines of PublicAPI.Unshipped.txt into PublicAPI.Shipped.txt.
set -euo pipefail
dir="$(cd "${1:?usage: tools/public-api.sh PROJECT_DIRECTORY}" && pwd)"
for f in PublicAPI.Shipped.txt PublicAPI.Unshipped.txt; do
    [ -f "$dir/$f" ] || printf '#nullable enable\n' >"$dir/$f"
done
log="$(mktemp)"
for _ in 1 2 3; do
    # Several rounds: the compiler may stop reporting after a first batch of errors.
    dotnet build "$dir" -c Release -nologo -v:quiet -clp:NoSummary -p:TreatWarningsAsErrors=false >"$log" 2>&1 || true
    new="$(grep -o "warning RS0016: Symbol '[^']*'" "$log" | sed "s/^warning RS0016: Symbol '//; s/'\$//" | sort -u || true)"
    [ -n "$new" ] || break
    { cat "$dir/PublicAPI.Unshipped.txt"; printf '%s\n' "$new"; } | { read -r first; echo "$first"; sort -u; } >"$log.txt"
    mv "$log.txt" "$dir/PublicAPI.Unshipped.txt"
done
if grep -q "RS0017" "$log"; then
    echo "public-api: removed public API (RS0017), a breaking change; not applied:" >&2
    grep -o "RS0017: [^[]*" "$log" | sort -u >&2
fi
rm -f "$log"
echo "public-api: $(grep -vc '^#' "$dir/PublicAPI.Unshipped.txt") unshipped, $(grep -vc '^#' "$dir/PublicAPI.Shipped.txt" || true) shipped lines in $dir"
