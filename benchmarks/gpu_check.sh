#!/usr/bin/env bash
# GPU check: the project's XGBoost ranker fitted on 1,000,000 synthetic candidate rows on CPU and
# on a CUDA GPU; prints both fit times, the ratio and the devices the boosters ran on, and writes
# benchmarks/results/gpu_check.json (see benchmarks/gpu_check.py). Needs no network.
#
#   bash benchmarks/gpu_check.sh [--wheels DIR]... [--rows N] [--rounds N] [--per-query N] [--out FILE]
#
# Python: $PYTHON, else .venv/bin/python, else python3 (it needs numpy, pandas, scipy, xgboost).
# --wheels DIR: wheels carried to a machine without network (`pip download --no-deps -d DIR
# xgboost==3.1.2` where there is one) are installed into a temporary folder first, offline. A
# wheel split to fit a size limit (`split -b 50M x.whl DIR/x.whl.part-`, the parts possibly in
# several DIRs) is joined again in name order.
# Exit codes: 0 both sides ran, the GPU one on CUDA; 2 bad arguments; 3 no CUDA device (CPU side
# only); 4 the GPU side failed or XGBoost ran it on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n ${PYTHON:-} ]]; then
  py=$PYTHON
elif [[ -x .venv/bin/python ]]; then
  py=.venv/bin/python
else
  py=python3
fi

args=()
wheel_dirs=()
while (($#)); do
  case $1 in
    --wheels)
      if [[ $# -lt 2 || ! -d $2 ]]; then
        echo "gpu_check: error: --wheels needs an existing folder" >&2
        exit 2
      fi
      wheel_dirs+=("$2")
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done

if ((${#wheel_dirs[@]})); then
  site=$(mktemp -d)
  trap 'rm -rf "$site"' EXIT
  mkdir -p "$site/wheels" "$site/lib"
  for dir in "${wheel_dirs[@]}"; do
    for wheel in "$dir"/*.whl; do
      if [[ -e $wheel ]]; then cp "$wheel" "$site/wheels/"; fi
    done
  done
  # Parts of split wheels, sorted by file name across all folders, appended to their wheel.
  while IFS= read -r part; do
    name=$(basename "$part")
    cat "$part" >>"$site/wheels/${name%.part-*}"
  done < <(for dir in "${wheel_dirs[@]}"; do
    for part in "$dir"/*.whl.part-*; do
      if [[ -e $part ]]; then printf '%s\t%s\n' "$(basename "$part")" "$part"; fi
    done
  done | sort | cut -f2)
  if ! compgen -G "$site/wheels/*.whl" >/dev/null; then
    echo "gpu_check: error: no *.whl or *.whl.part-* in ${wheel_dirs[*]}" >&2
    exit 2
  fi
  "$py" -m pip install --quiet --no-index --no-deps --no-compile --disable-pip-version-check \
    --target "$site/lib" "$site"/wheels/*.whl
  export PYTHONPATH="$site/lib${PYTHONPATH:+:$PYTHONPATH}"
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  echo "nvidia-smi: not found"
fi
echo "python: $("$py" -c 'import sys; print(sys.version.split()[0], sys.executable)')"

status=0
PYTHONUNBUFFERED=1 "$py" -m benchmarks.gpu_check "${args[@]}" || status=$?
exit "$status"
