"""Stage 1, probe: read a machine (live, or a recorded tree under a root) into HostFacts.

``facts`` holds the model this stage hands on (and the helpers that answer questions about
it); ``host.probe_host`` assembles it from the readers in this package.
"""
