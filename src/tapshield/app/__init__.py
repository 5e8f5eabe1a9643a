"""The use cases: what tapshield does, as plain functions over typed options.

Analyse a file (:mod:`tapshield.app.analyze`), value an outage
(:mod:`tapshield.app.impact`), run a drill (:mod:`tapshield.app.drill`), watch
a live stream (:mod:`tapshield.app.live`) and the one-command demo
(:mod:`tapshield.app.demo`). Each takes a frozen options dataclass and returns
a typed outcome; none prints. The command line parses options, calls one of
these and prints the outcome; the service, the console and the stream runner
call the same functions, so every front door runs the same house.

Import the submodule you need: this package imports nothing itself, so that
``tapshield --help`` does not load Polars, SciPy or the compiled kernels.
"""
