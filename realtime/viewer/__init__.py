"""The PyQt6 viewer (``window``; the only module that imports Qt) and the check that Qt's platform plugin loads
(``qt_probe``, in a child process).
"""
