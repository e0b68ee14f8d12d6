#!/bin/sh
# Install what the benchmarks measure into bench/.peers (kept out of the project venv):
#   bench/.peers/bin/{supervisord,supervisorctl,circusd,circusctl}   pip, one venv
#   bench/.peers/node/node_modules/.bin/pm2                          npm, a bench-only prefix
#   bench/.peers/twinvisor-<label>/bin/twinvisor                      twinvisor itself, NOT editable
#
# Usage: bench/setup_peers.sh [REF [LABEL]]
#   REF   a git commit/branch/tag of this repository (default: HEAD), or a directory to install
#   LABEL the venv's suffix (default: the short commit, or "dir")
# twinvisor is installed from `git archive REF` with a plain `pip install` (not -e), so pip
# byte-compiles its modules at install time: this environment sets PYTHONDONTWRITEBYTECODE=1,
# and an editable install then compiles every module at every CLI call. Measure on this one.
# The peers are installed once; run the script again with another REF for another twinvisor.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
peers="$here/.peers"
ref=${1:-HEAD}

if [ ! -x "$peers/bin/circusd" ] || [ ! -x "$peers/bin/supervisord" ]; then
    python3 -m venv "$peers"
    "$peers/bin/pip" install --quiet supervisor circus
fi
if [ ! -x "$peers/node/node_modules/.bin/pm2" ]; then
    mkdir -p "$peers/node"
    npm install --silent --no-audit --no-fund --prefix "$peers/node" pm2 >/dev/null
fi

if [ -d "$ref" ]; then
    label=${2:-dir}
    src=$(cd "$ref" && pwd)
    tmp=""
else
    commit=$(git -C "$root" rev-parse --short "$ref^{commit}")
    label=${2:-$commit}
    tmp=$(mktemp -d /tmp/tvsrc.XXXXXX)
    git -C "$root" archive "$commit" | tar -x -C "$tmp"
    src=$tmp
fi
venv="$peers/twinvisor-$label"
rm -rf "$venv"
python3 -m venv "$venv"
# a plain (non-editable) install; pip compiles the .pyc files even with PYTHONDONTWRITEBYTECODE
"$venv/bin/pip" install --quiet "$src"
[ -n "$tmp" ] && rm -rf "$tmp"
echo "$label" >"$venv/twinvisor-ref"

"$peers/bin/supervisord" --version
"$peers/bin/circusd" --version
PM2_HOME=$(mktemp -d /tmp/pm2v.XXXXXX) sh -c '"$0" --version --no-daemon 2>/dev/null | tail -1; rm -rf "$PM2_HOME"' "$peers/node/node_modules/.bin/pm2"
echo "twinvisor ($label): $venv/bin/twinvisor"
