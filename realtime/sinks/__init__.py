"""Where results go: the H.264 MP4 and JSON Lines and mask PNG writers (``writers``), crash-safe recordings
(``recording``), the contact sheet (``preview``), the text summary (``report``), output path checks
(``output_paths``) and the MP4's frame geometry (``geometry``). Sinks import neither sources nor the core.
"""
