# Sourced by the scripts that run from a bare checkout without `pip install` (the lent GPU machine has PyTorch but
# no polyp-live install): the repository's top-level folders become importable under the installed names
# (polyp_live.train, polyp_live.engines, ...) through a namespace folder of symlinks in .cache/ (ignored by git),
# and the repository itself for benchmarks.* and tests.*.
POLYP_NS_DIR="$PWD/.cache/polyp_live_ns"
mkdir -p "$POLYP_NS_DIR/polyp_live"
for _pkg in train engines realtime calibration; do ln -sfn "$PWD/$_pkg" "$POLYP_NS_DIR/polyp_live/$_pkg"; done
export PYTHONPATH="$POLYP_NS_DIR:$PWD${PYTHONPATH:+:$PYTHONPATH}"
