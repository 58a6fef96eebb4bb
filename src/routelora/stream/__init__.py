"""Continual-learning streams: methods learn tasks in order and are evaluated after every step
(:func:`run_stream`), giving accuracy matrices, their metrics and a cost table (:class:`StreamResult`)."""

from routelora.stream.config import StreamConfig, load_stream_config, resolve_tasks
from routelora.stream.result import MethodResult, StreamResult
from routelora.stream.runner import run_stream
from routelora.stream.state_io import load_state, save_state
from routelora.stream.steps import stream_methods

__all__ = [
    "MethodResult",
    "StreamConfig",
    "StreamResult",
    "load_state",
    "load_stream_config",
    "resolve_tasks",
    "run_stream",
    "save_state",
    "stream_methods",
]
