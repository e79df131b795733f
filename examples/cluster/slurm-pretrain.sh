#!/bin/bash
# Data-parallel pre-training on Slurm: one rank per GPU, launched by srun through PMIx (Open MPI built with PMIx, as
# Slurm sites build it).
#
#   sbatch examples/cluster/slurm-pretrain.sh swav.yaml /shared/runs/swav /shared/caches/pool
#
# Every rank trains on its share of each global batch (train.batchSize / ranks samples, which must divide evenly);
# rank 0 writes RUN_DIR. RUN_DIR must be on shared storage (every rank reads the checkpoint when the job resumes).
# The pool's LMDB cache is built beforehand (medssl ingest, or slurm-array.sh for shards) and copied to each node's
# local disk here, as LMDB wants a local filesystem. A requeued job resumes from the last checkpoint; with the same
# number of ranks it continues exactly as an uninterrupted run would.
#
# Written from Slurm's and Open MPI's documentation; not run on a Slurm cluster (stages/train/README.md says what was).
#
#SBATCH --job-name=medssl-pretrain
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4        # ranks per node: one per GPU
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8          # cores per rank: TensorFlow's threads and the crops' workers
#SBATCH --mem=0
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --output=medssl-pretrain-%j.log
set -euo pipefail

CONFIG=${1:?medssl config file}
OUT=${2:?run folder on shared storage}
CACHE=${3:?cache of the pool on shared storage}
LOCAL=${TMPDIR:-/tmp}/medssl-cache-$SLURM_JOB_ID

# One copy of the cache per node.
srun --ntasks-per-node=1 --ntasks="$SLURM_NNODES" bash -c "rm -rf '$LOCAL' && cp -r '$CACHE' '$LOCAL'"

RESUME=()
if [ -f "$OUT/checkpoint/state.json" ]; then RESUME=(--resume); fi

# Each rank takes the GPU of its local rank (CUDA_VISIBLE_DEVICES) and the cores Slurm gave it. --kill-on-bad-exit
# stops every rank if one fails (medssl also aborts the MPI job when a rank fails).
srun --mpi=pmix --kill-on-bad-exit=1 medssl pretrain --config "$CONFIG" --out "$OUT" --cache "$LOCAL" "${RESUME[@]}"

srun --ntasks-per-node=1 --ntasks="$SLURM_NNODES" rm -rf "$LOCAL"
