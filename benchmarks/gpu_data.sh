#!/usr/bin/env bash
# Copies a small sample of the real frames into .gpu/data (git-ignored), the folder a device call carries
# (`carry: [".gpu"]`) and benchmarks/gpu.sh reads: Kvasir-SEG and CVC-ClinicDB images (no masks) and the ten
# 1080p HoloHub frames, about 10 MB. The data itself stays in ../shared/data; .gpu is never committed.
#
#   bash benchmarks/gpu_data.sh [SHARED_DATA] [COUNT]      # default ../shared/data, 32 frames per set
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-${POLYP_LIVE_DATA:-../shared/data}}
COUNT=${2:-32}
DEST=${GPU_DATA_DEST:-.gpu/data}  # tests write elsewhere
[ -d "$SRC" ] || { echo "no data folder at $SRC" >&2; exit 2; }
pick() {  # FOLDER -> every Nth image file so that COUNT are spread over the set
  find "$1" -type f \( -name '*.jpg' -o -name '*.png' \) -not -path '*/masks/*' | sort |
    awk -v n="$COUNT" '{f[NR]=$0} END {s=int(NR/n); if (s<1) s=1; for (i=1; i<=NR && c<n; i+=s) {print f[i]; c++}}'
}
rm -rf "$DEST/kvasir-seg" "$DEST/cvc-clinicdb" "$DEST/holohub-1080p"
for set in kvasir-seg/images cvc-clinicdb holohub-1080p; do
  [ -d "$SRC/$set" ] || continue
  pick "$SRC/$set" | while read -r file; do
    rel=${file#"$SRC"/}
    mkdir -p "$DEST/$(dirname "$rel")"
    cp "$file" "$DEST/$rel"
  done
done
echo "$(find "$DEST" -type f | wc -l) frames, $(du -sh "$DEST" | cut -f1) in $DEST"
