"""Inference engines: ONNX export, TensorRT builds, and one interface over PyTorch / ONNX Runtime / TensorRT.

Entry points (import them from their modules; importing this package loads nothing):
:func:`engines.registry.open_engine`, :func:`engines.registry.available_backends`,
:func:`engines.onnx_export.export_onnx`, :func:`engines.onnx_format.read_onnx_contract` (the ONNX file format),
:func:`engines.tensorrt_build.build_engine`, ``polyp-export`` (:mod:`engines.cli_export`) and
``python -m engines.gpu_check``.
"""
