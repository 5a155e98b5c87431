"""Real-time polyp segmentation: capture -> preprocess -> infer -> postprocess -> overlay -> sinks.

Library API (no Qt needed)::

    from polyp_live.engines.registry import open_engine
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, run_to_completion
    from polyp_live.realtime.sinks.writers import JsonlSink, VideoWriterSink
    from polyp_live.realtime.sources.files import VideoFileSource

    source = VideoFileSource("case.mp4")
    info = source.open()
    with open_engine("default") as engine:
        summary = run_to_completion(source, engine, PipelineConfig(),
                                    [VideoWriterSink("annotated.mp4", info), JsonlSink("case.jsonl")])
        # or: with Pipeline(source, engine, PipelineConfig()) as run:
        #         for result in run: ...          # polyp_live.realtime.types.Result, in order

Layout (the data flow; import-linter checks the layers, ``make lint``):

* shared vocabulary: ``types`` (frozen records, enums), ``errors``, ``ports`` (the source and sink protocols),
  ``settings`` (live-adjustable rendering), ``timebase`` (the one time base of every output);
* ``sources/``: files and URLs, image folders, capture devices, network streams, the simulated camera, reconnects,
  playback pacing and the CLI's ``open_source`` factory;
* ``core/``: ``queues``, the pure stage functions (``stages``, ``postprocess``, ``overlay``), the threads
  (``pipeline``) and the run statistics (``stats``);
* ``sinks/``: the MP4 / JSON Lines / mask writers, crash-safe recordings, the contact sheet, the text summary and
  the output path checks;
* ``viewer/``: PyQt6 (imported only when a window opens) and the platform-plugin probe;
* ``batch/``: ``polyp-batch`` (Ray only in ``batch.ray_pool``); ``cli``: ``polyp-live``.

Sources, core and sinks import none of each other. Importing this package imports nothing heavy.
"""
