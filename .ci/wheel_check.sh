#!/usr/bin/env bash
# A plain `pip install` of the wheel into a fresh venv, as a new user would: site-packages gets `polyp_live` and
# nothing else of ours, ONNX Runtime comes with it (the fast CPU default), and polyp-live annotates the bundled clip
# from outside the repository (nothing of the checkout on sys.path). About 2 minutes; run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
"$WORK/venv/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
WHEEL=$(ls "$WORK"/dist/polyp_live-*.whl)
"$WORK/venv/bin/python" - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = sorted({n.split("/")[0] for n in names})
ours = [t for t in tops if not t.endswith(".dist-info")]
assert ours == ["polyp_live"], f"the wheel installs top-level {ours}, expected only polyp_live"
for needed in ("polyp_live/train/weights/default.safetensors", "polyp_live/train/weights/default.int8.onnx",
               "polyp_live/realtime/cli.py", "polyp_live/realtime/sources/network.py"):
    assert needed in names, f"{needed} is missing from the wheel"
print("wheel top-level names:", tops)
PY
"$WORK/venv/bin/python" -m pip install -q "$WHEEL"
cd "$WORK"
"$WORK/venv/bin/polyp-live" --input "$REPO/samples/cvc_clinicdb_seq01-09.mp4" --output "$WORK/out.mp4" \
  --stats "$WORK/stats.json" --max-frames 40 --no-view > "$WORK/summary.txt"
"$WORK/venv/bin/python" - "$WORK/stats.json" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
assert stats["frames_out"] == 40, stats["frames_out"]
assert stats["backend"] == "onnxruntime", f"plain install runs on {stats['backend']}, expected ONNX Runtime"
print("plain install:", stats["backend"], stats["precision"], f"{stats['throughput_fps']} fps, 40 frames written")
PY
test -s "$WORK/out.mp4"
echo "== wheel check passed =="
