"""Where frames come from: video files and URLs (``files``), capture devices (``device``), network streams
(``network``), a simulated camera (``simulated``), playback at a file's own rate (``pacing``), reconnects
(``reconnect``) and the CLI's factory (``open``). Sources import neither the pipeline core nor the sinks.
"""
