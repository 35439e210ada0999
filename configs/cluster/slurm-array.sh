#!/usr/bin/env bash
# Spreads a qbench matrix over a Slurm job array: task I of N runs the deterministic slice `--shard I/N` into its
# own results file; afterwards `qbench merge` joins the shards (a cell recorded twice is refused).
#
#   sbatch --array=0-3 configs/cluster/slurm-array.sh configs/minigpt4.yaml
#   # when all tasks are done:
#   qbench merge results/minigpt4-shard-*-of-4.json -o results/minigpt4.json
#
# Each task resumes its own file, so a requeued or preempted task (sbatch --requeue) continues where it stopped.
#SBATCH --job-name=qbench
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=08:00:00
#SBATCH --requeue
#SBATCH --output=qbench-%A_%a.log
set -euo pipefail
matrix=${1:?usage: sbatch --array=0-(N-1) slurm-array.sh MATRIX.yaml}
count=${SLURM_ARRAY_TASK_COUNT:?run as a job array (sbatch --array=...)}
index=${SLURM_ARRAY_TASK_ID:?}
name=$(basename "$matrix" .yaml)
qbench=${QBENCH:-build/release/harness/cli/qbench}
mkdir -p results
# A node-local cache keeps checkpoints and artifacts off the shared file system.
export QBENCH_CACHE_DIR=${QBENCH_CACHE_DIR:-${TMPDIR:-/tmp}/qbench-cache}
exec "$qbench" run "$matrix" --shard "$index/$count" --resume \
     -o "results/$name-shard-$index-of-$count.json"
