"""A family module whose import needs a library that is not installed (the registry's test)."""

import definitely_not_installed_library  # noqa: F401


def load() -> None: ...
