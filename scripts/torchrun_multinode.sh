#!/usr/bin/env bash
# Multi-node, multi-GPU training with torchrun, where there is no SLURM: run this on every node,
# with the same NNODES and MASTER_ADDR (a node the others reach) and each node's NODE_RANK.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 scripts/torchrun_multinode.sh recipes/mnist_vae.yaml
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 scripts/torchrun_multinode.sh recipes/mnist_vae.yaml
#
# Options after the recipe go to `lightning-vae fit`. GPUS_PER_NODE defaults to the GPUs
# nvidia-smi lists, MASTER_PORT to 29500. torchrun starts one process per GPU and Lightning reads
# the ranks it sets (RANK, LOCAL_RANK, WORLD_SIZE). The recipe's batch_size is per GPU: see
# docs/scaling.md. Each node needs the package, the data and the same recipe at the same paths.
# DRY_RUN=1 prints the torchrun command instead of running it.
set -euo pipefail

recipe=${1:?usage: NNODES=.. NODE_RANK=.. MASTER_ADDR=.. $0 RECIPE.yaml [lightning-vae fit options]}
shift
: "${NNODES:?set NNODES, the number of machines}"
: "${NODE_RANK:?set NODE_RANK, the index of this machine: 0 .. NNODES-1}"
: "${MASTER_ADDR:?set MASTER_ADDR, the address of the machine with NODE_RANK=0}"
gpus_per_node=${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}

exec ${DRY_RUN:+echo} torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" \
  --nproc_per_node "$gpus_per_node" \
  --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
  -m lightning_vae.cli fit --config "$recipe" --config recipes/trainer/ddp.yaml \
  --trainer.num_nodes "$NNODES" --trainer.devices "$gpus_per_node" "$@"
