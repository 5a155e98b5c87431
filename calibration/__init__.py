"""INT8 post-training quantization (Q/DQ ONNX) calibrated on real frames, with an accuracy report.

Modules: :mod:`calibration.frames` (frame sources), :mod:`calibration.quantize` (ranges and Q/DQ
models per target), :mod:`calibration.cache` (calibration cache), :mod:`calibration.layers`
(``--keep-float`` selection, per-layer error), :mod:`calibration.report` (Dice/IoU/agreement/latency),
:mod:`calibration.pipeline` (:func:`~calibration.pipeline.run_calibration`) and :mod:`calibration.cli`
(``polyp-calibrate``). Nothing is imported here, so ``import calibration`` stays cheap.
"""
