#!/usr/bin/env bash
# One GPU session's runs (issue 22), as run on a lent H200 on 2026-12-04 with about five minutes
# of device time left: the zoo's two GPU models (scripts/build_zoo.py) and the IWAE paper's rows
# and the VampPrior VAE on MNIST, all at once on the one GPU, each trained for TRAIN_TIME.
#   MNIST_DIR=/path/to/mnist OUT=/path/to/results bash scripts/gpu_session.sh
# A run whose CUDA-graph capture fails (within its first minute) is retried with cuda_graph off.
# EXTRA adds arguments to every fit and test (a CPU trial: accelerator, batch limits).
set -u
MNIST_DIR=${MNIST_DIR:?the folder holding the four MNIST IDX files}
OUT=${OUT:?a folder for the results}
TRAIN_TIME=${TRAIN_TIME:-00:00:01:50}
DEADLINE=${DEADLINE:-255}  # seconds after which the runs still going are stopped
PAPER_K=${PAPER_K:-5000}
EXTRA=${EXTRA:-}
mkdir -p "$OUT" build
LVAE=(python3 -m lightning_vae.cli)

retry_without_graph() {  # LOG START: whether a failed run is worth one more try without the graph
  [ $((SECONDS - $2)) -lt 60 ] && echo "failed within a minute; again with cuda_graph off" >>"$1"
}

zoo_model() {  # NAME "TEST ARGUMENTS": build one zoo model
  local log=$OUT/zoo_${1#lightning-vae/}.log start=$SECONDS
  local build=(python3 scripts/build_zoo.py --mnist-dir "$MNIST_DIR" --work build/zoo --only "$1")
  "${build[@]}" --extra-args "$2 $EXTRA" >"$log" 2>&1 || { retry_without_graph "$log" $start \
    && "${build[@]}" --extra-args "$2 --model.cuda_graph false $EXTRA" >>"$log" 2>&1; }
  grep -hv "it/s\]" "build/zoo/${1#lightning-vae/}.log" | tail -n 40 >>"$log"
  echo "total: $((SECONDS - start)) s" >>"$log"
}

paper_row() {  # NAME OVERRIDES...: fit the IWAE paper's MLP with OVERRIDES, then test it
  local name=$1; shift
  local dir=build/paper/$name log=$OUT/paper_$name.log start=$SECONDS
  local common=(--config recipes/iwae_mnist_mlp.yaml --data.init_args.data_dir "$MNIST_DIR"
    --data.init_args.download false --data.init_args.batch_size 100
    --data.init_args.val_size 5000 --trainer.logger CSVLogger --trainer.enable_progress_bar false)
  local fit=("${common[@]}" --config recipes/trainer/gpu_fast.yaml "$@"
    --trainer.max_time "$TRAIN_TIME" --trainer.default_root_dir "$dir"
    --trainer.logger.save_dir "$dir" $EXTRA)
  "${LVAE[@]}" fit "${fit[@]}" >"$log" 2>&1 || { retry_without_graph "$log" $start \
    && rm -rf "$dir" && "${LVAE[@]}" fit "${fit[@]}" --model.cuda_graph false >>"$log" 2>&1; }
  echo "fit: $((SECONDS - start)) s" >>"$log"
  "${LVAE[@]}" test "${common[@]}" "$@" --model.iw_samples "$PAPER_K" --model.iw_chunk_size 1000 \
    --data.init_args.eval_batch_size 1000 \
    --ckpt_path "$dir/lightning_logs/version_0/checkpoints/last.ckpt" \
    --trainer.default_root_dir "$dir/test" --trainer.logger.save_dir "$dir/test" $EXTRA \
    >>"$log" 2>&1
  echo "fit and test: $((SECONDS - start)) s" >>"$log"
}

# The device's lease ends at a fixed time: stop whatever is still running then, and collect.
( sleep "$DEADLINE"; pkill -f "scripts/build_zoo.py"; pkill -9 -f "lightning_vae.cli" ) &
watchdog=$!
runs=()
zoo_model lightning-vae/mnist-vae \
  "--model.iw_chunk_size 250 --data.init_args.eval_batch_size 1000" & runs+=($!)
zoo_model lightning-vae/mnist-hvae \
  "--model.iw_chunk_size 25 --data.init_args.eval_batch_size 500" & runs+=($!)
paper_row vae_k1 & runs+=($!)
paper_row iwae_k5 --model.objective '{"name": "iwae", "samples": 5}' & runs+=($!)
paper_row iwae_k50 --model.objective '{"name": "iwae", "samples": 50}' & runs+=($!)
paper_row vamp --model.prior '{"name": "vamp", "components": 500}' & runs+=($!)
wait "${runs[@]}"
kill $watchdog 2>/dev/null
for run in build/paper/*; do
  echo "== $run"; cat "$run/test/lightning_logs/version_0/metrics.csv"
  tail -n 2 "$run/lightning_logs/version_0/metrics.csv"
done >"$OUT/paper_metrics.txt" 2>&1
tar czf "$OUT/zoo.tgz" lightning_vae/hub/zoo_models/mnist-vae lightning_vae/hub/zoo_models/mnist-hvae \
  build/zoo/*/test/lightning_logs/version_0/metrics.csv 2>/dev/null
