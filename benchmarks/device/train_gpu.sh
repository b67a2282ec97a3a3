#!/usr/bin/env bash
# Continue training built-ins side by side on a lent GPU machine (the `device` tool of this
# workplace; see docs/benchmarks.md, "Training on a GPU"), from their shipped weights. Batches
# are made by --workers processes (the machine has 16 cores); finishing (thresholds, val, size
# model) is left to `python -m seglab.training.recipes finish-<recipe> --out runs/gpu/<run>`
# on any machine.
#
#   RUNS="sd un" BUDGET=450 DATA=.gpudata/dsb2018 bash benchmarks/device/train_gpu.sh
#   RUNS=he BUDGET=450 DATA=.gpudata/dsb2018 MONUSEG=.gpudata/monuseg-kumar bash benchmarks/device/train_gpu.sh
#
# RUNS: sd (stardist-nuclei), un (unet-nuclei), he (stardist-he). DATA (and MONUSEG) are
# DSB2018-style folders holding at least the train split (benchmarks/device/pack_data.py makes
# them small enough to travel). Everything a run leaves (best/, train_result.json, its log, the
# machine and GPU load) is packed into $OUT/<run>.tar.
set -u
BUDGET=${BUDGET:-450}
DATA=${DATA:-../shared/data/dsb2018}
OUT=${OUT:-runs/gpu-out}
RUNS=${RUNS:-sd un}
MONUSEG=${MONUSEG:-../shared/data/monuseg-kumar}
SD_WORKERS=${SD_WORKERS:-8}
UN_WORKERS=${UN_WORKERS:-5}
HE_WORKERS=${HE_WORKERS:-13}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NUMBA_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT" runs/gpu
{
    date -u; nproc --all; lscpu | grep -m1 "Model name"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
    "$PY" -c "import sys, torch, numpy, numba, scipy, skimage, tifffile; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'numba', numba.__version__)"
} > runs/gpu/machine.txt 2>&1
cat runs/gpu/machine.txt
"$PY" -c "import seglab.training.recipes" || exit 1
(nvidia-smi dmon -s u -d 15 > runs/gpu/dmon.txt 2>&1 &) 2>/dev/null

run() {  # run NAME RECIPE ARGS...
    local name=$1 recipe=$2; shift 2
    timeout $((BUDGET + 100)) "$PY" -m seglab.training.recipes "$recipe" --data "$DATA" --device "$DEVICE" \
        --time-budget "$BUDGET" --train-only --validate-every 2500 --ema-decay 0.999 --out "runs/gpu/$name" "$@" \
        > "runs/gpu/$name.log" 2>&1
    echo "$name exited $?" >> runs/gpu/machine.txt
}
for name in $RUNS; do
    case $name in
        sd) run sd stardist-nuclei --init src/seglab/models/builtin/stardist-nuclei --lr 5e-4 --seed 21 \
                --workers "$SD_WORKERS" & ;;
        un) run un unet-nuclei --init src/seglab/models/builtin/unet-nuclei --lr 5e-4 --seed 22 \
                --workers "$UN_WORKERS" & ;;
        he) run he stardist-he --init src/seglab/models/builtin/stardist-he --monuseg "$MONUSEG" \
                --monuseg-weight 3 --lr 3e-4 --seed 23 --workers "$HE_WORKERS" & ;;
        *) echo "unknown run $name (sd, un, he)"; exit 2 ;;
    esac
done
wait
pkill -f "nvidia-smi dmon" 2>/dev/null
for name in $RUNS; do tail -n 4 "runs/gpu/$name.log"; done
for name in $RUNS; do
    # best/ only (16 MiB a file comes back): not the H&E recipe's last/
    tar -cf "$OUT/$name.tar" -C runs/gpu --exclude="$name/last" "$name" "$name.log" machine.txt dmon.txt 2>/dev/null
done
ls -la "$OUT"
