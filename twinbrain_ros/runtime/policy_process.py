"""The policy in a process of its own, behind the interface the node uses: ``predict``, ``ask``, ``config``,
``device``, ``close``.

Why a process: in one process the model's Python (a transformers forward is thousands of small ops) and
the node's callbacks take turns on one GIL, and each turn a camera callback waits is latency the robot
sees. In a child process the model has an interpreter of its own; the node's inference thread only waits
on a pipe, which releases the GIL.

Measured on a 2-core host (`twinbrain-bench control`, both modes): node overhead p99 the same within
noise, control tick error p99 ~2.4 ms against ~0.85 ms in a thread, so it is not the default; where
the model is Python-heavy beside many cores it is the way to keep its GIL out of the node.

The child is started with ``spawn``: forking a process that runs DDS threads or holds CUDA state is
unsafe. It imports torch and the model; this module does not, so neither does a node that uses it. A
failure in the child comes back as an exception of the same builtin type and message (``ValueError: state
contains NaN``), so the node reports it as it would one in process. A child that dies (killed, out of memory)
fails the call in progress and every later one with ``PolicyProcessError``: the node reports it and keeps
running; reconfiguring the node starts a new child. So does a child that does not answer within
``call_timeout`` (hung in a driver, stopped): it is killed, not waited on for ever. When the parent dies
the child's pipe closes and it exits after its current call: no orphan keeps a GPU.

Camera frames cross the pipe at the model's input size, resized here as the model would resize them
(a 640x480 rgb8 frame is 0.9 MB pickled, at 64x64 12 KB); a frame the model would refuse goes as it is,
for the model's own error.
"""

from __future__ import annotations

import builtins
import multiprocessing
import signal
import threading

import numpy as np

from .images import resize_rgb


class PolicyProcessError(RuntimeError):
    """The inference process failed to start, died, or raised an exception that is not a builtin one."""


def load_policy(checkpoint: str, device: str, base_model_path: str, tiny_base_dir: str, camera_names: list[str],
                joint_lower: list[float], joint_upper: list[float], max_velocity: list[float],
                chunk_step_period: float):
    """The policy a policy_node runs: a fine-tuned checkpoint, or (``checkpoint`` empty) the tiny random
    preset with a normalisation whose every chunk stays inside the joint limits at a safe speed."""
    from ..model import Normalization, TwinBrainPolicy  # heavy import: only where the model runs

    if checkpoint:
        return TwinBrainPolicy.from_checkpoint(checkpoint, device=device, base_model_path=base_model_path or None)
    n = len(joint_lower)
    policy = TwinBrainPolicy.from_tiny_preset(tiny_base_dir, device=device, camera_names=camera_names,
                                              state_dim=n, action_dim=n)
    policy.normalization = Normalization.untrained_safe(joint_lower, joint_upper, max_velocity, chunk_step_period)
    return policy


def _serve(conn, load: dict, torch_threads: int) -> None:
    """The child: load the policy, report ready (config, device) or the error, then answer calls in order
    until the parent sends None or its end of the pipe closes."""
    # Ctrl-C reaches the whole process group: the node shuts down on it and ends this process in order
    # (close), instead of the model dying mid-call with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        policy = load_policy(**load)
    except Exception as exc:   # noqa: BLE001 - reported to the parent, which decides
        _send(conn, ("error", type(exc).__name__, str(exc)))
        return
    if not _send(conn, ("ok", (policy.config, str(policy.device)))):
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):   # the parent is gone
            return
        if request is None:
            return
        method, args, kwargs = request
        try:
            reply = ("ok", getattr(policy, method)(*args, **kwargs))
        except Exception as exc:   # noqa: BLE001 - a bad observation must not end the process
            reply = ("error", type(exc).__name__, str(exc))
        if not _send(conn, reply):
            return


def _send(conn, reply) -> bool:
    """False when the parent is gone (then the child just ends, without a traceback of its own)."""
    try:
        conn.send(reply)
    except OSError:
        return False
    return True


def _raise(name: str, message: str):
    error = getattr(builtins, name, None)
    if isinstance(error, type) and issubclass(error, Exception):
        try:
            rebuilt = error(message)
        except TypeError:   # a builtin that takes other arguments (UnicodeDecodeError, ...)
            pass
        else:
            raise rebuilt
    raise PolicyProcessError(f"{name}: {message}")


class PolicyProcess:
    """``load_policy(**load)`` run in a child process with ``torch_threads`` CPU threads. Blocks until the
    model is loaded (no timeout: a large checkpoint takes what it takes); a loading error is raised here
    with its own type (a missing checkpoint: FileNotFoundError). A call unanswered after ``call_timeout``
    seconds (None: no limit) kills the child."""

    def __init__(self, load: dict, torch_threads: int = 0, call_timeout: float | None = None):
        self.call_timeout = call_timeout
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child_end, load, torch_threads),
                                    name="twinbrain-inference", daemon=True)
        self._process.start()
        child_end.close()   # the child's end lives in the child only: its death reads as EOF here
        self._lock = threading.Lock()   # one call at a time on the pipe
        try:
            self.config, self.device = self._reply()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _reply(self, timeout: float | None = None):
        if timeout is not None and not self._conn.poll(timeout):
            self._process.kill()
            self._process.join(1.0)
            raise PolicyProcessError(f"the inference process did not answer within {timeout:g} s: killed")
        try:
            reply = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(timeout=1.0)
            raise PolicyProcessError(f"the inference process exited (exit code {self._process.exitcode})") from None
        if reply[0] == "error":
            _raise(*reply[1:])
        return reply[1]

    def _call(self, method: str, *args, **kwargs):
        with self._lock:
            try:
                self._conn.send((method, args, kwargs))
            except (OSError, ValueError):   # broken pipe, or closed here
                raise PolicyProcessError(f"the inference process is gone (exit code {self._process.exitcode})") \
                    from None
            return self._reply(self.call_timeout)

    def _at_input_size(self, images):
        size = self.config.image_size

        def one(img):
            fine = (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
                    and min(img.shape[:2]) >= 16)   # what model/prompts.py check_rgb accepts
            return resize_rgb(img, size) if fine else img

        if isinstance(images, dict):
            return {name: one(img) for name, img in images.items()}
        if isinstance(images, (list, tuple)):
            return [one(img) for img in images]
        return one(images)

    def predict(self, images, state, instruction: str, seed: int | None = None, steps: int | None = None,
                guide=None):
        return self._call("predict", self._at_input_size(images), state, instruction, seed=seed, steps=steps,
                          guide=guide)

    def ask(self, images, question: str, max_new_tokens: int = 64) -> str:
        return self._call("ask", images, question, max_new_tokens)

    def close(self, timeout: float = 5.0) -> None:
        """Let the call in progress finish (up to ``timeout``), then ask the child to exit; kill it if it
        has not. The exit request goes in under the call lock, so it never lands inside a half-written
        request; a call that hangs gets the child killed, and its caller a PolicyProcessError."""
        polite = self._lock.acquire(timeout=timeout)
        try:
            if polite and self._process.is_alive():
                try:
                    self._conn.send(None)
                except (OSError, ValueError):
                    pass
                self._process.join(timeout)
        finally:
            if polite:
                self._lock.release()
        if self._process.is_alive():
            self._process.kill()
            self._process.join(1.0)
        if polite:   # else a caller may still be reading it: the child's death ends that read
            self._conn.close()
