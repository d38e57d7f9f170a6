"""Log lines and progress, written to the session's activity log (`host`)."""

from wit_world.imports import host, types


def trace(message: str) -> None:
    host.log(types.LogLevel.TRACE, message)


def debug(message: str) -> None:
    host.log(types.LogLevel.DEBUG, message)


def info(message: str) -> None:
    host.log(types.LogLevel.INFO, message)


def warn(message: str) -> None:
    host.log(types.LogLevel.WARN, message)


def error(message: str) -> None:
    host.log(types.LogLevel.ERROR, message)


def progress(percent: int, message: str) -> None:
    """Progress of the current call (the last one reported is kept)."""
    host.progress(max(0, min(100, percent)), message)
