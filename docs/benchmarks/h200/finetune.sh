#!/bin/bash
# Session 4's H200 lease, one command: three SchNetPack runs side by side on the one GPU,
# each a plain `spktrain` line capped by Lightning's max_time:
#   1. qdf_relu_bf16_finetune: phase 2 of the shipped model, fine-tuned from the epoch-61
#      export with a cosine schedule over 20 epochs (lr 5e-4);
#   2. qdf_relu_bf16_finetune_t16: the same over 16 epochs from lr 3e-4 (validation picks);
#   3. gpu_qdf_cosine: QDF from scratch on the 20-epoch cosine schedule, the learning-rate
#      ablation beside session 3's gpu_qdf (plateau schedule, 20 epochs).
# Needs .whl/ and .gpudata/ as run.sh. Usage (repo root): bash docs/benchmarks/h200/finetune.sh OUTDIR [MAX_TIME]
set -u
OUTDIR=${1:?output folder}
MAX_TIME=${2:-00:00:07:30}
RUNS=${RUNS:-/tmp/qdf_runs}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH QDF_CACHE_DIR=$PWD/.gpudata PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
nvidia-smi -L 2>/dev/null
python3 -c "import torch, schnetpack, schnetpack_ext, ase_qdf; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
INIT=$PWD/docs/benchmarks/training_qdf_relu_bf16/qdf_qm9_epoch61.pt
COMMON="experiment=qdf_qm9_relu_finetune run.path=$RUNS logger=csv data.num_workers=3 +trainer.max_time=$MAX_TIME"
LOGS=$OUTDIR/logs; mkdir -p $LOGS
timeout 570 spktrain $COMMON run.id=qdf_relu_bf16_finetune task.init_from=$INIT > $LOGS/finetune.log 2>&1 &
timeout 570 spktrain $COMMON run.id=qdf_relu_bf16_finetune_t16 task.init_from=$INIT globals.lr=3e-4 \
  trainer.max_epochs=16 > $LOGS/finetune_t16.log 2>&1 &
timeout 570 spktrain $COMMON run.id=gpu_qdf_cosine > $LOGS/cosine.log 2>&1 &
sleep 75
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
alive=$(jobs -r | wc -l); echo "alive after 75 s: $alive"
if [ "$alive" = 0 ]; then for f in $LOGS/*.log; do echo "== $f"; tail -20 $f; done; exit 1; fi
wait
cd $RUNS
for id in qdf_relu_bf16_finetune qdf_relu_bf16_finetune_t16 gpu_qdf_cosine; do
  echo "== $id"; tail -3 $(ls -t $id/csv/*/metrics.csv | head -1) | cut -c1-200
  tar czf $OUTDIR/$id.tgz $id/best_model $id/checkpoints/last.ckpt $id/csv $id/config.yaml $id/cli.log
done
ls -la $OUTDIR
