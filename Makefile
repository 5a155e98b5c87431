# Two commands do all set-up on a fresh machine:
#   make test   create .venv, install with the dev extras, run the test suite
#   make demo   create .venv, install, annotate the bundled polyp clip with the default model: an annotated MP4,
#               a contact sheet PNG (look at it first), the procedure report (HTML + JSON) and the run summary
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch lies on this machine's disk; naming the version keeps pip from pulling a CUDA build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,tensorrt-rtx,pretrained,cluster
SAMPLE ?= samples/cvc_clinicdb_seq01-09.mp4

.PHONY: venv test lint demo clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

venv: $(BIN)/.installed

test: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check train engines realtime calibration benchmarks tests
	$(BIN)/lint-imports

demo: venv
	$(BIN)/polyp-live --input $(SAMPLE) --output demo_annotated.mp4 --stats demo_summary.json \
		--preview demo_preview.png --report demo_report.html
	@echo "make demo: look at demo_preview.png (frames with the polyp masks, the alarm), demo_report.html (the" \
		"procedure report: open it in a browser), then demo_annotated.mp4"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
