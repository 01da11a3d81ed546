#!/bin/bash
# ganforge on several machines under Slurm: one torchrun per node, each starting one process per GPU.
#   sbatch scripts/slurm_multinode.sh            (edit the #SBATCH lines, PRESET, OUT and DATA first)
# See docs/DISTRIBUTED.md, "Several machines".
#SBATCH --job-name=ganforge
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node; it starts the GPU processes itself
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32           # data decoding (data.num_workers per process) runs on these
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

PRESET=${PRESET:-dcgan-celeba}
OUT=${OUT:-/shared/runs/$PRESET-$SLURM_JOB_ID}   # on a filesystem every node sees: checkpoints are read by all
DATA=${DATA:-shards:/shared/data/celeba-64}       # made once with: ganforge prepare SRC --out /shared/data/celeba-64
GPUS=${GPUS:-8}

MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29500}
export OMP_NUM_THREADS=4
# NCCL's usual failure modes (docs/DISTRIBUTED.md): uncomment what your cluster needs
# export NCCL_DEBUG=INFO                 # print which transport (IB, sockets, P2P) each link uses
# export NCCL_SOCKET_IFNAME=ib0          # the interface the nodes reach each other on (not docker0 / lo)
# export NCCL_IB_DISABLE=1               # no working InfiniBand: fall back to TCP sockets
# export NCCL_P2P_DISABLE=1              # GPUs hang or corrupt data over PCIe peer-to-peer (some VMs, old BIOS)
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1  # a failed collective ends the process instead of hanging it

# --max-restarts 1: a lost worker restarts the job once; ganforge resumes from the newest checkpoint in $OUT
srun torchrun \
    --nnodes "$SLURM_NNODES" --nproc-per-node "$GPUS" \
    --rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv-id "$SLURM_JOB_ID" \
    --max-restarts 1 \
    -m ganforge train "$PRESET" --data "$DATA" --out "$OUT" --quiet \
    --set train.batch_size=1024 --set train.dist_timeout=600
