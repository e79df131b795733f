#!/bin/bash
# Ingest an archive as N shard caches with a Slurm job array: task i runs `medssl ingest --shard i/N`.
#
#   sbatch examples/cluster/slurm-array.sh /shared/archive /shared/caches medssl.yaml
#
# Each task ingests into node-local scratch (LMDB wants a local filesystem), starting from its shard's last copy on
# shared storage if a previous attempt left one (a cache is consistent at every moment, so any copy is a valid
# starting point), and copies the cache back when done. Requeued or failed tasks therefore resume, not restart.
# Replay then reads the union: replay({ caches: ['/shared/caches/shard-0', ..., '/shared/caches/shard-7'], ... }).
#
#SBATCH --job-name=medssl-ingest
#SBATCH --array=0-7            # N tasks: keep SHARDS below equal to the array size (add %4 to run 4 at a time)
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=medssl-ingest-%A_%a.log
set -euo pipefail

SHARDS=${MEDSSL_SHARDS:-8}   # overridable for a local dry run
ARCHIVE=${1:?archive folder}
CACHES=${2:?folder for the shard caches}
CONFIG=${3:?medssl config file}
I=${SLURM_ARRAY_TASK_ID:?run under sbatch --array}
LOCAL=${TMPDIR:-/tmp}/medssl-shard-$I

mkdir -p "$CACHES"
rm -rf "$LOCAL"
if [ -d "$CACHES/shard-$I" ]; then cp -r "$CACHES/shard-$I" "$LOCAL"; fi

medssl ingest "$ARCHIVE" --config "$CONFIG" --cache "$LOCAL" --shard "$I/$SHARDS" --workers "${SLURM_CPUS_PER_TASK:-4}"
medssl cache verify "$LOCAL" --json

rm -rf "$CACHES/shard-$I.tmp"
cp -r "$LOCAL" "$CACHES/shard-$I.tmp"
rm -rf "$CACHES/shard-$I"
mv "$CACHES/shard-$I.tmp" "$CACHES/shard-$I"
rm -rf "$LOCAL"
