#!/bin/sh
# Install the peers the benchmarks compare against into bench/.peers (a separate venv, so the
# project venv stays clean). bench_core.py finds bench/.peers/bin/supervisord{,ctl} on its own;
# bench_zero_downtime.py and bench_kill_soak.py also find bench/.peers/bin/circusd and circusctl.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python3 -m venv "$here/.peers"
"$here/.peers/bin/pip" install --quiet supervisor circus
"$here/.peers/bin/supervisord" --version
"$here/.peers/bin/circusd" --version
