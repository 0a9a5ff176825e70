"""memlab's own errors: a bad config value, bad input data, a model that cannot be loaded, training that
diverged, a cache or output folder that is not memlab's. Each message is one line that names what to change, so
``python -m memlab`` prints just that line (no traceback; ``HYDRA_FULL_ERROR=1`` or ``-v`` shows it).
"""
from __future__ import annotations


class MemlabError(Exception):
    """Base of every error whose message alone tells the user what to do."""


class ConfigError(MemlabError, ValueError):
    """A config value that cannot work; the message names the key, the value and what is allowed."""


class DataError(MemlabError, ValueError):
    """Bad or missing input data; the message is one line that says what to change."""


class TrainingDiverged(MemlabError, RuntimeError):
    """The training loss (or the weights) became inf or NaN; the message names the epoch, the step, the
    learning rate and what to try. Nothing after training (scores) runs on such a model."""


def find_memlab_error(err: BaseException | None) -> MemlabError | None:
    """The MemlabError behind ``err``, also when a library wrapped it (Hydra's instantiate does)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, MemlabError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def one_line(err: BaseException) -> str:
    """``err`` as one line: its first line, with the type when the message is empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def exit_on_memlab_error(err: BaseException, suffix: str = "") -> None:
    """For an ``except`` block at the command line's edge: memlab's own error behind ``err`` printed as one
    line (``error: ...`` + ``suffix``) and exit 1; anything else, or ``HYDRA_FULL_ERROR=1``, re-raised."""
    import os
    import sys

    known = find_memlab_error(err)
    if known is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"error: {one_line(known)}{suffix}", file=sys.stderr)
    raise SystemExit(1) from None  # not an Exception: Hydra lets it through without a traceback
