"""`deploy tune`: measure candidate configurations of the runtime on this machine and keep the best.

``loadgen`` drives the runtime, ``space`` lists the knobs and their values, ``trial`` launches a
candidate through the process backend and measures it, ``search`` runs the paired, budgeted
one-knob-at-a-time search, ``report`` writes the config file, the Markdown report and the chart.
"""
