#!/bin/bash
# Second leg of the H200 lease (run right after run.sh, on the same machine): four of the
# runs continue from their checkpoints for 4 more minutes each, side by side. The time
# limit is cumulative because the checkpoints carry Lightning's Timer state (5 min).
# Usage (repo root, same environment as run.sh): bash docs/benchmarks/h200/leg2.sh OUTDIR
set -u
OUTDIR=${1:?output folder}
RUNS=${RUNS:-/work/train_runs}
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH QDF_CACHE_DIR=$PWD/.gpudata PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
COMMON="run.path=$RUNS logger=csv data.num_workers=2 +trainer.max_time=00:00:09:00"
LOGS=/tmp/qdf_h200_logs2; mkdir -p $LOGS
for run in "qdf_relu_bf16 experiment=qdf_qm9_relu" "gpu_qdf experiment=qdf_qm9_relu" \
           "gpu_schnet experiment=schnet_qm9_under14" "gpu_painn experiment=painn_qm9_under14"; do
  set -- $run
  timeout 290 spktrain $2 run.id=$1 $COMMON > $LOGS/$1.log 2>&1 &
done
wait
cd $RUNS
tar czf $OUTDIR/resumed2.tgz qdf_relu_bf16/best_model qdf_relu_bf16/checkpoints/last.ckpt qdf_relu_bf16/csv \
    qdf_relu_bf16/config.yaml qdf_relu_bf16/cli.log
tar czf $OUTDIR/leg2.tgz --exclude=checkpoints gpu_qdf gpu_schnet gpu_painn
tar czf $OUTDIR/logs2.tgz -C $LOGS .
