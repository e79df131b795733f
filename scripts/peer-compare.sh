#!/usr/bin/env bash
# medssl's SwAV beside PyTorch's at the same budget: the main job's "SwAV multi-modal" arm is trained twice on the
# same crops from the same initial weights, once by medssl and once by PyTorch (bench/swav-peer.py, the model code of
# bench/train-peer.py), and both encoders are evaluated by medssl's protocols against no pre-training.
#
#   python3 -m venv .peer && .peer/bin/pip install torch==2.13.0 numpy     # once (.peer is gitignored)
#   npm run build && bash scripts/peer-compare.sh [CONFIG] [OUT]            # default fixtures/experiment.yaml runs/peer
#
# OUT/experiment/report.md holds the table; OUT/peer-run.json the peer's time and losses.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-fixtures/experiment.yaml}
out=${2:-runs/peer}
python=${PEER_PYTHON:-.peer/bin/python}
node=(node --initial-old-space-size=256)
"${node[@]}" dist/bench/peer-swav.js export --config "$config" --out "$out"
OMP_WAIT_POLICY=PASSIVE "$python" bench/swav-peer.py --data "$out"
"${node[@]}" dist/bench/peer-swav.js import --config "$config" --out "$out"
rm -rf "$out/experiment"
"${node[@]}" dist/pipeline/app/cli.js experiment --config "$out/compare.yaml" --out "$out/experiment"
