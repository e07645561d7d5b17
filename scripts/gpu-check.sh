#!/usr/bin/env bash
# The GPU measurements of the speed issue, for the GPU machine lent by the workplace's device tool
# (no .NET, no network there; PyTorch's libtorch is used through TorchBackend=none, see docs/gpu.md).
#
#   scripts/gpu-check.sh pack             here: .device/ = .NET runtime (../shared/gpu/pack.sh), the CLI
#                                         published without libtorch, the tiny fixture model and a 20-item dataset
#   scripts/gpu-check.sh bench FAMILY     there: scripts/bench.sh (the issue's settings) for one family -> $OUT/FAMILY-$DTYPE.json
#   scripts/gpu-check.sh dataset          there: 20-item run-dataset (ELECT, N=10, T=100, t_stop=40, 512x512) on the
#                                         tiny model -> $OUT/summary.json, whose "memory" block shows device memory per item
#
# On the device, call with carry [".device"] and prefix `source .device/gpu/device-env.sh &&`.
# One family's bench (4 modes x 4 runs, full size) takes several minutes: keep one per device call.
# DEVICE (cuda) and DTYPE (fp16) can be overridden; for the dataset step also RES (512), STEPS (100),
# CANDIDATES (10), STOP (40), MASK_LAST (20), e.g. DEVICE=cpu DTYPE=fp32 RES=128 STEPS=10 STOP=4 MASK_LAST=2 on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-fp16}
RES=${RES:-512} STEPS=${STEPS:-100} CANDIDATES=${CANDIDATES:-10} STOP=${STOP:-40} MASK_LAST=${MASK_LAST:-20}
OUT=${OUT:-gpu-check}
app=.device/app/elect.dll

case "${1:-}" in
  pack)
    shared=${SHARED:-../shared}
    mkdir -p "$(git rev-parse --git-dir)/info"   # pack.sh records .device/ in info/exclude
    bash "$shared/gpu/pack.sh"
    rm -rf .device/app
    dotnet publish src/Elect.Cli -c Release -p:TorchBackend=none -r linux-x64 --self-contained false -o .device/app
    rm -rf .device/fixtures && mkdir -p .device/fixtures/ds
    cp -r "$shared/fixtures/models/ip2p-tiny" .device/fixtures/
    cp "$shared/fixtures/models/ip2p-input.png" "$shared/fixtures/models/ip2p-input2.png" .device/fixtures/ds/
    {
      echo "{"
      for k in $(seq -w 0 19); do
        img=ip2p-input.png; (( 10#$k % 2 )) && img=ip2p-input2.png
        sep=","; [[ $k == 19 ]] && sep=""
        echo "  \"item$k\": {\"image_path\": \"$img\", \"editing_instruction\": \"Replace the cat with a bear\"}$sep"
      done
      echo "}"
    } > .device/fixtures/ds/dataset.json
    du -sh .device
    echo "packed; rebuild for this machine before testing here: dotnet build Elect.sln -c Release"
    ;;
  bench)
    family=${2:?usage: gpu-check.sh bench instructpix2pix|ultraedit}
    MODELS=$family ELECT=$app OUT=$OUT DEVICE=$DEVICE DTYPE=$DTYPE bash scripts/bench.sh --log-level warning
    ;;
  dataset)
    mkdir -p "$OUT"
    rm -rf /tmp/elect-gpu-ds
    dotnet "$app" run-dataset --dataset-dir .device/fixtures/ds --model instructpix2pix --model-path .device/fixtures/ip2p-tiny \
      --device "$DEVICE" --dtype "$DTYPE" --resolution "$RES" --inference-steps "$STEPS" --select-one-seed --num-random-candidates "$CANDIDATES" \
      --stopping-step "$STOP" --last-step-for-mask-extraction "$MASK_LAST" --output-dir /tmp/elect-gpu-ds --log-level warning
    cp /tmp/elect-gpu-ds/summary.json "$OUT/summary.json"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(json.dumps({k: s[k] for k in ("done", "failed", "seconds", "memory")}, indent=1))' "$OUT/summary.json"
    ;;
  *)
    sed -n '2,15p' "$0"; exit 2 ;;
esac
