#!/bin/bash
# One lease of an H200 (the workplace's `device` tool), all in one command:
#   1. GPU throughput of QDF, SchNet and PaiNN (ase_qdf.benchmarks.throughput --device cuda);
#   2. eight SchNetPack training runs side by side on the one GPU, the same wall-clock
#      budget each (MAX_TIME): the shipped run resumed from its committed checkpoint,
#      and from scratch SchNet, PaiNN, QDF paper mode and the QDF ablations.
# Needs: .whl/ (the pure-Python and cp312 wheels the GPU image lacks: ase, schnetpack,
# hydra-core, matscipy, ...) and .gpudata/ (the qm9pack_under14 cache database and split).
# Usage (repo root): bash docs/benchmarks/h200/run.sh OUTDIR [MAX_TIME] [BENCH]
set -u
OUTDIR=${1:?output folder}
MAX_TIME=${2:-00:00:05:00}
BENCH=${3:-1}
RUNS=${RUNS:-/work/train_runs}
[ -n "${SKIP_INSTALL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH QDF_CACHE_DIR=$PWD/.gpudata PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
python3 -c "import torch, schnetpack, schnetpack_ext, ase_qdf; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
DEV=cpu; python3 -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" && DEV=cuda

if [ "$BENCH" = 1 ]; then
  timeout 110 python3 -m ase_qdf.benchmarks.throughput --device $DEV --db .gpudata/qm9pack_under14.db \
    --molecules 1024 --inference-batch-sizes 1,32,128,512 \
    --models "QDF (shipped recipe),QDF (paper mode),SchNet,PaiNN" --json $OUTDIR/throughput_h200.json \
    2>&1 | grep -v Warning | tee $OUTDIR/throughput_h200.log
fi

# the shipped run continues from its committed epoch-29 state
mkdir -p $RUNS/qdf_relu_bf16/checkpoints
cp docs/benchmarks/training_qdf_relu_bf16/run/config.yaml $RUNS/qdf_relu_bf16/
cp docs/benchmarks/training_qdf_relu_bf16/run/last.ckpt $RUNS/qdf_relu_bf16/checkpoints/
export OMP_NUM_THREADS=1
COMMON="run.path=$RUNS logger=csv data.num_workers=2 +trainer.max_time=$MAX_TIME"
declare -A RUN=(
  [qdf_relu_bf16]="experiment=qdf_qm9_relu"
  [gpu_qdf]="experiment=qdf_qm9_relu"
  [gpu_qdf_hkoff]="experiment=qdf_qm9_relu task.hk_mode=off"
  [gpu_qdf_hkalt]="experiment=qdf_qm9_relu task.hk_mode=alternating"
  [gpu_qdf_papergrid]="experiment=qdf_qm9_relu model.representation.grid=paper"
  [gpu_qdf_paper]="experiment=qdf_qm9_paper"
  [gpu_schnet]="experiment=schnet_qm9_under14"
  [gpu_painn]="experiment=painn_qm9_under14"
)
LOGS=/tmp/qdf_h200_logs; mkdir -p $LOGS
for id in "${!RUN[@]}"; do
  timeout 420 spktrain ${RUN[$id]} run.id=$id $COMMON > $LOGS/$id.log 2>&1 &
done
sleep 60
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv 2>/dev/null
alive=$(jobs -r | wc -l); echo "alive after 60 s: $alive"
if [ "$alive" = 0 ]; then for f in $LOGS/*.log; do echo "== $f"; tail -20 $f; done; exit 1; fi
wait
for id in "${!RUN[@]}"; do
  echo "== $id"; grep -E "Epoch|Error|error" $LOGS/$id.log | tail -2
  ls $RUNS/$id/csv/*/metrics.csv >/dev/null 2>&1 && tail -2 $(ls -t $RUNS/$id/csv/*/metrics.csv | head -1) | cut -c1-160
done
cd $RUNS
tar czf $OUTDIR/resumed.tgz qdf_relu_bf16/best_model qdf_relu_bf16/checkpoints/last.ckpt qdf_relu_bf16/csv qdf_relu_bf16/config.yaml qdf_relu_bf16/cli.log
# two archives: each file that comes back from the lease must stay under 16 MiB
tar czf $OUTDIR/abl1.tgz --exclude=checkpoints gpu_qdf gpu_qdf_hkoff
tar czf $OUTDIR/abl2.tgz --exclude=checkpoints gpu_qdf_hkalt gpu_qdf_papergrid
tar czf $OUTDIR/baselines.tgz --exclude=checkpoints gpu_qdf_paper gpu_schnet gpu_painn
tar czf $OUTDIR/logs.tgz -C $LOGS .
ls -la $OUTDIR
