"""Optional dependencies ("extras"): which extra brings which module, and one clear line when
one is missing.

The base install serves the broker, the console and the demo city. Some features need more:
the flood app (and the demo's storm scenario) needs ``cityvisor[flood]``. A command that reaches
such a feature without its extra stops with one line naming what to install, never a traceback:

>>> print(MissingExtra("flood", module="tifffile"))
the flood app needs the optional dependencies of cityvisor[flood] (no module tifffile): pip install 'cityvisor[flood]'
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

#: extra -> the top-level modules it brings (kept in step with pyproject.toml)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "flood": ("scipy", "tifffile", "imagecodecs"),
    "postgresql": ("asyncpg",),
    "nats": ("nats",),
}
#: extra -> what needs it, as the error line says it
EXTRA_FEATURES: dict[str, str] = {
    "flood": "the flood app",
    "postgresql": "the PostgreSQL store backend",
    "nats": "the change feed on NATS",
}
#: in-process app (setting ``apps``) -> the extra it needs
APP_EXTRAS: dict[str, str] = {
    "flood": "flood",
}

__all__ = ["APP_EXTRAS", "EXTRA_FEATURES", "EXTRA_MODULES", "MissingExtra", "extra_of",
           "require_app_extras", "require_extra", "requires_extra"]


class MissingExtra(RuntimeError):
    """A feature was used without its optional dependencies installed."""

    def __init__(self, extra: str, *, module: str | None = None,
                 feature: str | None = None) -> None:
        self.extra = extra
        self.module = module
        self.feature = feature or EXTRA_FEATURES.get(extra, f"this feature of cityvisor[{extra}]")
        missing = f" (no module {module})" if module else ""
        super().__init__(f"{self.feature} needs the optional dependencies of cityvisor[{extra}]"
                         f"{missing}: pip install 'cityvisor[{extra}]'")


def extra_of(error: ImportError) -> MissingExtra | None:
    """The ``MissingExtra`` that ``error`` means, if the module it could not import belongs to
    an extra; None for any other import error (a bug, which should surface as one)."""
    name = (error.name or "").partition(".")[0]
    for extra, modules in EXTRA_MODULES.items():
        if name in modules:
            return MissingExtra(extra, module=name)
    return None


@contextmanager
def requires_extra(feature: str | None = None) -> Iterator[None]:
    """Turn an ``ImportError`` of an extra's module raised in the block into ``MissingExtra``
    (``feature``: what the block does, for the message); other errors pass unchanged."""
    try:
        yield
    except ImportError as error:
        missing = extra_of(error)
        if missing is None:
            raise
        raise MissingExtra(missing.extra, module=missing.module,
                           feature=feature or missing.feature) from error


def require_extra(extra: str, feature: str | None = None) -> None:
    """Raise ``MissingExtra`` now unless every module of ``extra`` imports (checked before a
    server starts, so that the error is not a traceback in its start-up log)."""
    for module in EXTRA_MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise MissingExtra(extra, module=module, feature=feature) from error


def require_app_extras(apps: list[str] | tuple[str, ...]) -> None:
    """``require_extra`` for each in-process app of ``apps`` that needs one."""
    for app in apps:
        extra = APP_EXTRAS.get(app)
        if extra is not None:
            require_extra(extra, f"the {app} app")
