"""``polyp-batch``: archives of recorded procedures. ``archive`` (which videos, one video's run, the tables; no
Ray), ``ray_pool`` (the only module that imports Ray) and ``cli``.
"""
