#!/usr/bin/env bash
# medssl beside PyTorch at the same budget: every pre-training arm of the config that the peer trains (SimCLR; SwAV
# multi-modal, uni-modal, target modality only; supervised; hybrid) is trained twice on the same crops from the same
# initial weights, once by medssl and once by PyTorch (bench/peer-train.py, the model code of bench/train-peer.py), and every
# encoder is evaluated by medssl's protocols against no pre-training, and medssl's against the peer's. With
# evaluate.replicatePretraining (fixtures/experiment-replicated.yaml) both sides pre-train once per evaluation seed.
#
#   python3 -m venv .peer && .peer/bin/pip install torch==2.13.0 numpy     # once (.peer is gitignored)
#   npm run build && bash scripts/peer-compare.sh [CONFIG] [OUT]            # default fixtures/experiment.yaml runs/peer
#
# PEER_ARMS=hybrid,simclr (arm kinds) limits the comparison to those arms. OUT/experiment/report.md holds the table;
# OUT/<arm>[/seed-<s>]/peer-run.json each peer run's time and losses.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-fixtures/experiment.yaml}
out=${2:-runs/peer}
python=${PEER_PYTHON:-.peer/bin/python}
node=(node --initial-old-space-size=256)
peer() { "${node[@]}" dist/bench/peer-arms.js "$@" --config "$config" --out "$out" --arms "${PEER_ARMS:-}"; }
mapfile -t runs < <(peer plan)
for run in "${runs[@]}"; do
  read -r arm replicate <<<"$run"
  dir="$out/$arm"; [ "$replicate" = - ] || dir="$dir/seed-$replicate"
  peer export --arm "$arm" --replicate "$replicate"
  OMP_WAIT_POLICY=PASSIVE "$python" bench/peer-train.py --data "$dir"
  peer import --arm "$arm" --replicate "$replicate"
  rm -f "$dir/crops.bin"   # 0.36 GB a run at the quick preset: the peer's encoder is what the comparison keeps
done
peer compare
rm -rf "$out/experiment"
"${node[@]}" dist/pipeline/app/cli.js experiment --config "$out/compare.yaml" --out "$out/experiment"
