"""malloc replacements (jemalloc, tcmalloc) installed on the host, for LD_PRELOAD planning."""

from __future__ import annotations

from orchestrator.probe.rootfs import RootFs

# Where Debian/Ubuntu (multiarch), Fedora/RHEL (lib64) and source builds (/usr/local) put them.
CANDIDATE_PATHS: tuple[str, ...] = tuple(
    f"{directory}/{library}"
    for directory in (
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/local/lib",
    )
    for library in ("libjemalloc.so.2", "libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
)


def find_allocators(fs: RootFs) -> tuple[str, ...]:
    """Host paths (not prefixed by the probe root) of the candidate libraries that exist, sorted."""
    return tuple(sorted(path for path in CANDIDATE_PATHS if fs.path(path).is_file() and fs.exists(path)))
