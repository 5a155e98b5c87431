"""Inference engines: ONNX export, TensorRT builds, and one interface over PyTorch / ONNX Runtime / TensorRT.

Entry points (import them from their modules; importing this package loads nothing):
:func:`polyp_live.engines.registry.open_engine`, :func:`polyp_live.engines.registry.available_backends`,
:func:`polyp_live.engines.onnx_export.export_onnx`, :func:`polyp_live.engines.onnx_format.read_onnx_contract` (the ONNX
file format), :func:`polyp_live.engines.tensorrt_build.build_engine`, ``polyp-export``
(:mod:`polyp_live.engines.cli_export`) and ``python -m polyp_live.engines.gpu_check``.
"""
