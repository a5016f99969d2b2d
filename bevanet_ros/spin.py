"""The process around the nodes: rclpy.init, one executor, a clean end on SIGINT or SIGTERM.

rclpy's own signal handlers shut the context down the moment Ctrl-C arrives, so a lifecycle node
could no longer pass through its shutdown transition, and a second Ctrl-C raised
KeyboardInterrupt in the middle of the teardown. Here the signals only ask the spin loop to end
(`bevanet_core.serving.shutdown`); the nodes are then shut down and destroyed while the context
is still valid, and the process exits 0.
"""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from bevanet_core.serving.params import ParameterError
from bevanet_core.serving.shutdown import ShutdownSignals

POLL_S = 0.1  # how often the spin loop looks at the signal flag


def finish(node: Node) -> None:
    """Shuts a lifecycle node down through its shutdown transition, then destroys any node."""
    if isinstance(node, LifecycleNode):
        try:
            node.trigger_shutdown()
        except Exception:  # noqa: BLE001 - already finalized, or in a transition: destroy anyway
            pass
    node.destroy_node()


def startup_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "this node cannot start with these parameters or this model"."""
    from bevanet_core.serving.model_loading import ModelLoadError

    return (
        ParameterError,
        ModelLoadError,
        rclpy.exceptions.InvalidParameterValueException,
        rclpy.exceptions.InvalidParameterTypeException,
    )


def serve(
    build: Callable[[Executor], Node],
    args: list[str] | None,
    logger_name: str,
    run: Callable[[Node, ShutdownSignals], int] | None = None,
) -> int:
    """rclpy.init, `build(executor)`, spin until a signal or an external shutdown (or, given
    `run`, run(node, signals) instead of spinning), finish the node, rclpy.shutdown. Returns the
    exit code: 0 (or run's), or 1 when the node could not start (the reason logged as one line)."""
    signals = ShutdownSignals()
    node = None
    code = 0
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        executor = SingleThreadedExecutor()
        node = build(executor)
        executor.add_node(node)
        signals.running()
        if run is not None:
            code = run(node, signals)
        while run is None and not signals.requested:
            executor.spin_once(timeout_sec=POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except startup_errors() as exc:
        rclpy.logging.get_logger(logger_name).error(f"cannot start: {exc}")
        code = 1
    finally:
        signals.stopping()
        if node is not None:
            finish(node)
        rclpy.try_shutdown()
        signals.ignore_until_exit()
    return code
