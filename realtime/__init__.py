"""Real-time polyp segmentation: capture -> preprocess -> infer -> postprocess -> overlay -> sinks.

Library API (no Qt needed)::

    from polyp_live.engines.registry import open_engine
    from polyp_live.realtime.pipeline import Pipeline, PipelineConfig, run_to_completion
    from polyp_live.realtime.sinks import JsonlSink, VideoWriterSink
    from polyp_live.realtime.sources import VideoFileSource

    source = VideoFileSource("case.mp4")
    info = source.open()
    with open_engine("default") as engine:
        summary = run_to_completion(source, engine, PipelineConfig(),
                                    [VideoWriterSink("annotated.mp4", info), JsonlSink("case.jsonl")])
        # or: with Pipeline(source, engine, PipelineConfig()) as run:
        #         for result in run: ...          # polyp_live.realtime.types.Result, in order

Modules: ``types`` (frozen records, run mode and stop reason enums), ``ports`` (the source and sink
protocols), ``sources`` (+ ``video_streams``: main stream, orientation, SAR, FIFOs), ``timebase`` (the one
time base of every output), ``geometry`` (frame sizes and the MP4's letterbox), ``queues``, ``stages`` /
``postprocess`` / ``overlay`` (pure stage functions), ``sinks`` (+ ``output_paths``: output checks),
``pipeline`` (threads, queue table), ``stats`` / ``report`` (summary),
``settings`` (live-adjustable rendering), ``viewer`` (PyQt6, imported only when a window opens), ``cli``
(``polyp-live``). Importing this package imports nothing heavy.
"""
