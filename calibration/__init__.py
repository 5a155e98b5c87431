"""INT8 post-training quantization (Q/DQ ONNX) calibrated on real frames, with an accuracy report.

Modules: :mod:`polyp_live.calibration.frames` (frame sources), :mod:`polyp_live.calibration.quantize` (ranges and Q/DQ
models per target), :mod:`polyp_live.calibration.cache` (calibration cache), :mod:`polyp_live.calibration.layers`
(``--keep-float`` selection, per-layer error), :mod:`polyp_live.calibration.report` (Dice/IoU/agreement/latency),
:mod:`polyp_live.calibration.pipeline` (:func:`~polyp_live.calibration.pipeline.run_calibration`) and
:mod:`polyp_live.calibration.cli` (``polyp-calibrate``). Nothing is imported here, so ``import calibration`` stays
cheap.
"""
