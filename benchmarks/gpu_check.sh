#!/usr/bin/env bash
# The GPU check of issue 14, as ONE script for the GPU machine (an H200 with its own python3, torch,
# torchvision, numpy and pytest; no package registry, no jupyter, no d2l).  It installs the carried
# wheels (d2l and what it imports that the machine lacks), points the course at the carried data
# (the .gz files, which the course reads as they are), runs the GPU tests, then the GPU benchmark,
# and writes every log and result under $OUT (at most 8 files come back from there).
#
#   benchmarks/gpu_check.sh --prepare   # here, once: fill gpu_carry/ (git-ignored, < 64 MiB)
#   benchmarks/gpu_check.sh --dry-run   # here: the same steps on the CPU, tiny sizes
#   benchmarks/gpu_check.sh             # there: device tool `run`, carry ["gpu_carry"],
#                                       # timeout_s 420 (it takes about 3 minutes on an H200)
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=gpu_carry
# d2l 1.0.3 (its pins are stale: --no-deps) and the pure-Python packages its import needs that the
# GPU machine does not have (IPython, matplotlib-inline and theirs); versions as in .venv here.
WHEELS="d2l==1.0.3 ipython==9.18.1 ipython_pygments_lexers==1.1.1 matplotlib-inline==0.2.2
traitlets==5.16.1 jedi==0.20.1 parso==0.8.7 pexpect==4.9.0 ptyprocess==0.7.0 prompt_toolkit==3.0.53
wcwidth==0.9.4 stack-data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure_eval==0.2.4 decorator==5.3.1"

if [ "${1:-}" = "--prepare" ]; then
  set -e
  source="${LENET_COURSE_DATA:-../shared/data}"
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
  for name in FashionMNIST MNIST; do  # torchvision's layout, .gz files only (42 MB)
    mkdir -p "$CARRY/data/$name/raw"
    cp "$source/$name/raw/"*.gz "$CARRY/data/$name/raw/"
  done
  # shellcheck disable=SC2086
  "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels" $WHEELS
  du -sh "$CARRY" "$CARRY"/*
  size=$(du -sm "$CARRY" | cut -f1)
  [ "$size" -lt 56 ] || { echo "gpu_carry is $size MiB: too much to carry with the repo"; exit 1; }
  exit 0
fi
dry=""
case "${1:-}" in
  --dry-run) dry="--dry-run" ;;
  "") ;;
  *) echo "usage: $0 [--prepare | --dry-run]" >&2; exit 2 ;;
esac
[ -d "$CARRY/data" ] || { echo "no $CARRY/data: run $0 --prepare first (here)" >&2; exit 2; }
PY="${PYTHON:-python3}"
OUT="${OUT:-$(mktemp -d)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1

# 1. The carried wheels, installed offline into a folder of their own.
if ls "$CARRY"/wheels/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$work/site" "$CARRY"/wheels/*.whl || echo "warning: the wheels did not install"
fi
export PYTHONPATH="$PWD:$work/site${PYTHONPATH:+:$PYTHONPATH}"

# 2. The data: the course reads the carried .gz files; d2l's loader (torchvision) wants the IDX
#    files unpacked, so it gets an unpacked copy of Fashion-MNIST outside the carried folder.
export LENET_COURSE_DATA="$PWD/$CARRY/data"
mkdir -p "$work/d2l_data/FashionMNIST/raw"
for f in "$CARRY"/data/FashionMNIST/raw/*.gz; do
  gunzip -c "$f" > "$work/d2l_data/FashionMNIST/raw/$(basename "${f%.gz}")"
done

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'available', torch.cuda.is_available())" 2>&1 || true
} > "$OUT/machine.txt"

# 3. The GPU tests (skipped without CUDA), and the CPU checks of the recorded step.  No nbval
#    there: pyproject's addopts (nbval's options) are replaced, and nbval is off here too.
pytest=("$PY" -m pytest -q -o addopts=-ra -p no:nbval -p no:cacheprovider)
"${pytest[@]}" -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
tests=${PIPESTATUS[0]}
"${pytest[@]}" tests/test_train.py -k "cuda_graph or stand_in" 2>&1 \
  | tee "$OUT/cpu_graph_step_test.log"
cpu_test=${PIPESTATUS[0]}

# 4. The benchmark: JSON under $OUT.
"$PY" benchmarks/bench_gpu.py $dry --out "$OUT/bench_gpu.json" --d2l-root "$work/d2l_data" 2>&1 \
  | tee "$OUT/bench_gpu.log"
bench=${PIPESTATUS[0]}

echo "gpu tests: exit $tests; cpu graph-step test: exit $cpu_test; benchmark: exit $bench;" \
  "results in $OUT"
[ "$tests" -eq 0 ] && [ "$cpu_test" -eq 0 ] && [ "$bench" -eq 0 ]
