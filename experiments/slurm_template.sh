#!/usr/bin/env bash
# Cluster launch template (SLURM). Copy, set the account/partition, then e.g.
#   sbatch --array=0-15 experiments/slurm_template.sh render experiments/paper.yaml
#   sbatch experiments/slurm_template.sh pretrain experiments/paper.yaml
#SBATCH --job-name=ss3d
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
set -euo pipefail
STAGE=${1:?stage: render|pretrain|selftrain}
CONFIG=${2:?experiment yaml}
cd "${SLURM_SUBMIT_DIR:-.}"
source .venv/bin/activate   # or: conda activate ss3d
case "$STAGE" in
  render)  # one shard per array task; run `ss3d render --merge` once all are done
    ss3d render --config "$CONFIG" --no-collections \
      --shard "${SLURM_ARRAY_TASK_ID:-0}/${SLURM_ARRAY_TASK_COUNT:-1}" ;;
  pretrain)  # DDP over the node's GPUs; rank 0 logs to MLflow; a requeued job continues
    resume=(); [ -f "outputs/$(basename "$CONFIG" .yaml)/pretrain/last.pt" ] && resume=(--resume)
    torchrun --standalone --nproc-per-node "${SLURM_GPUS_ON_NODE:-1}" -m ss3d.cli pretrain \
      --config "$CONFIG" "${resume[@]}" ;;
  *)
    ss3d "$STAGE" --config "$CONFIG" ;;
esac
