"""Stage 2, select: load profiles and pick the one that fits the HostFacts, with reasons."""
