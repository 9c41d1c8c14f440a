"""Execute action chunks at control rate, blending consecutive chunks without stutter.

Time axis: action k of a chunk computed from an observation stamped ``t_obs`` is the setpoint for
``t_obs + k * step_period``. Inference takes tens of ms while the arm keeps moving, so when a chunk
arrives its steps already in the past are dropped and it is blended into what is being executed.
A chunk that arrives with nothing executing (the first after a start, a reset or a hold) starts
from its first action instead: the arm has held still at the observed state meanwhile, so none of it
has happened yet. Dropping its "past" steps started the plan ahead of the arm, which then chased it,
and with delta actions the next observations planned from an arm lagging its own plan.

  * ``replace``   — switch to the new chunk at once (a jump is possible; the safety node rate-limits).
  * ``crossfade`` — weight on the new chunk ramps 0 → 1 over ``blend_steps`` steps: no jump.
  * ``average``   — like crossfade, but the ramp ends at ``average_weight`` and old and new are
                    averaged until the old chunk runs out (temporal ensembling, ACT-style smoothing).
  * ``rtc``       — spliced like crossfade; the difference is upstream: the chunk was sampled guided
                    towards this executor's plan (runtime/rtc.py), so the two already agree where the
                    ramp blends them.

Between actions the plan is interpolated ``linear`` (velocity constant per step, so it jumps at every
action: at 10 Hz actions and 100 Hz control, a step change every tenth tick, which the safety limiter's
acceleration bound then absorbs) or ``pchip`` (monotone cubic Hermite, Fritsch-Carlson: velocity
continuous through every action, and never past the actions' own values, so joint limits the actions
respect still hold in between). With pchip the blends ramp with a smoothstep instead of a straight
line and the blended plan leaves the splice at the old plan's velocity, so a splice, too, keeps the
velocity the arm had (in the step right after a splice that carried velocity may take the plan a little
past the step's two values, as the moving arm would; the safety node's position clamp still applies).

The blended result is resampled onto the new chunk's grid, so memory stays bounded however many
chunks arrive; with pchip each sample keeps the blend's exact velocity as its Hermite tangent, so the
resampled plan is the blend to within a fraction of a milliradian (a refit to the samples alone bent
it right after the splice, where grid points crowd). After the last step the final setpoint is held.
NaN/inf never comes out: a chunk containing them is rejected with ValueError before it touches the
trajectory.
"""

from __future__ import annotations

import numpy as np

BLEND_POLICIES = ("replace", "crossfade", "average", "rtc")
INTERPOLATIONS = ("linear", "pchip")
# The fastest an interpolation runs between two actions, over the fastest secant of the steps around them:
# a monotone cubic Hermite with tangents within the neighbouring secants peaks at 1.5x (zero end tangents).
PEAK_SPEED_OVER_SECANT = {"linear": 1.0, "pchip": 1.5}


def pchip_slopes(times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-row tangents (N, D) of the monotone cubic through ``values`` at ``times``: 0 at a local extreme,
    else the weighted harmonic mean of the neighbouring secants (Fritsch & Butland 1984, as scipy's
    PchipInterpolator); at the two ends the end segment's secant (a chunk that starts an idle executor
    has its first tangent set to 0 there; a splice sets every tangent from the blend)."""
    x, y = np.asarray(times, np.float64), np.asarray(values, np.float64)
    m = np.zeros_like(y)
    if len(x) < 2:
        return m
    h = np.diff(x)[:, None]
    d = np.diff(y, axis=0) / h
    m[0], m[-1] = d[0], d[-1]
    if len(x) > 2:
        h0, h1, d0, d1 = h[:-1], h[1:], d[:-1], d[1:]
        w1, w2 = 2 * h1 + h0, h1 + 2 * h0
        same_sign = d0 * d1 > 0
        safe0, safe1 = np.where(same_sign, d0, 1.0), np.where(same_sign, d1, 1.0)   # no 1/0 where unused
        m[1:-1] = np.where(same_sign, (w1 + w2) / (w1 / safe0 + w2 / safe1), 0.0)
    return m


def interpolate(times: np.ndarray, values: np.ndarray, t: np.ndarray, method: str = "linear",
                slopes: np.ndarray | None = None, derivative: bool = False) -> np.ndarray:
    """Rows of ``values`` (N, D) at ``times`` (N,), sampled at ``t``: piecewise-linear or cubic Hermite
    (``pchip``; tangents ``slopes``, pchip_slopes' when not given) per dimension; before the first time
    the first row is held, after the last the last row. ``derivative``: the curve's velocity instead."""
    x, y = np.asarray(times, np.float64), np.asarray(values, np.float64)
    t = np.asarray(t, np.float64)
    if method == "linear" and not derivative:
        return np.stack([np.interp(t, x, y[:, d]) for d in range(y.shape[1])], axis=-1)
    if len(x) < 2:
        return np.zeros((len(t), y.shape[1])) if derivative else np.repeat(y[:1], len(t), axis=0)
    inside = ((t >= x[0]) & (t <= x[-1]))[:, None]   # held outside: no velocity
    i = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = (x[i + 1] - x[i])[:, None]
    s = (np.clip(t, x[0], x[-1])[:, None] - x[i][:, None]) / h
    if method == "linear":
        return np.where(inside, (y[i + 1] - y[i]) / h, 0.0)
    m = pchip_slopes(x, y) if slopes is None else slopes
    s2, s3 = s * s, s * s * s
    if derivative:
        return np.where(inside, ((6 * s2 - 6 * s) * (y[i] - y[i + 1]) / h + (3 * s2 - 4 * s + 1) * m[i]
                                 + (3 * s2 - 2 * s) * m[i + 1]), 0.0)
    return ((2 * s3 - 3 * s2 + 1) * y[i] + (s3 - 2 * s2 + s) * h * m[i]
            + (3 * s2 - 2 * s3) * y[i + 1] + (s3 - s2) * h * m[i + 1])


class ChunkExecutor:
    def __init__(self, dim: int, step_period: float, blend: str = "crossfade", blend_steps: int = 4,
                 average_weight: float = 0.5, interpolation: str = "linear"):
        if blend not in BLEND_POLICIES:
            raise ValueError(f"blend must be one of {BLEND_POLICIES}, got {blend!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.interpolation = interpolation
        self._slopes: np.ndarray | None = None    # pchip tangents of the plan, kept while it stands
        if step_period <= 0 or blend_steps < 1 or not 0 < average_weight <= 1:
            raise ValueError("step_period > 0, blend_steps >= 1 and 0 < average_weight <= 1 are required")
        self.dim, self.step_period, self.blend = dim, step_period, blend
        self.blend_steps, self.average_weight = blend_steps, average_weight
        self._times: np.ndarray | None = None     # (N,) seconds
        self._values: np.ndarray | None = None    # (N, dim)
        self.chunk_stamp: float | None = None     # observation stamp of the newest chunk

    @property
    def active(self) -> bool:
        return self._times is not None

    def reset(self, hold: np.ndarray | None = None, now: float = 0.0) -> None:
        """Forget all chunks; optionally hold a position from ``now``."""
        self.chunk_stamp = None
        if hold is None:
            self._times = self._values = self._slopes = None
        else:
            self._set(np.array([now]), np.asarray(hold, np.float64).reshape(1, self.dim))

    def _set(self, times: np.ndarray, values: np.ndarray, slopes: np.ndarray | None = None) -> None:
        self._times, self._values = times, values
        if self.interpolation == "pchip":
            self._slopes = pchip_slopes(times, values) if slopes is None else slopes
        else:
            self._slopes = None

    def _plan_at(self, t: np.ndarray, derivative: bool = False) -> np.ndarray:
        return interpolate(self._times, self._values, t, self.interpolation, self._slopes, derivative)

    def plan(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The trajectory being executed: (times (N,), rows (N, dim)), copies; None without one."""
        return None if self._times is None else (self._times.copy(), self._values.copy())

    def setpoint(self, now: float) -> np.ndarray | None:
        if self._times is None:
            return None
        return self._plan_at(np.asarray([now]))[0]

    def add_chunk(self, actions: np.ndarray, obs_stamp: float, now: float) -> int:
        """Blend a new chunk in; returns how many of its steps were already in the past (dropped)."""
        actions = np.asarray(actions, np.float64)
        if actions.ndim != 2 or actions.shape[1] != self.dim or actions.shape[0] < 1:
            raise ValueError(f"chunk must be (H, {self.dim}), got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("chunk contains NaN/inf")
        if self.chunk_stamp is not None and obs_stamp <= self.chunk_stamp:
            raise ValueError(f"chunk from stamp {obs_stamp:.3f} is not newer than the executing one "
                             f"({self.chunk_stamp:.3f})")
        start = obs_stamp if self._times is not None else max(obs_stamp, now)   # idle arm: from action 0
        times = start + self.step_period * np.arange(actions.shape[0])
        future = times > now
        dropped = int((times < now).sum())
        # Keep the step just before `now` (if any) so interpolation at `now` stays exact.
        keep = np.maximum(np.argmax(future) - 1, 0) if future.any() else actions.shape[0] - 1
        new_t, new_v = times[keep:], actions[keep:]
        if self._times is None or self.blend == "replace":
            slopes = None
            if self._times is None and self.interpolation == "pchip":
                # the idle arm stands still: the plan starts from rest instead of at its first step's speed
                slopes = pchip_slopes(new_t, new_v)
                slopes[0] = 0.0
            self._set(new_t, new_v, slopes)
            self.chunk_stamp = obs_stamp
            return dropped
        ramp_end = now + self.blend_steps * self.step_period
        old_end = float(self._times[-1])
        ramp_span = self.step_period * np.arange(1, self.blend_steps + 1)
        # The blends' own breakpoints join the grid so each ramp is exact where it starts and ends; with
        # pchip so do the old plan's, where its curvature changes.
        points = [[now], new_t[new_t > now], now + ramp_span, max(old_end, now) + ramp_span]
        if self.interpolation == "pchip":
            points.append(self._times)
        points = np.concatenate(points)
        grid = np.unique(points[(points >= now) & (points <= max(new_t[-1], now))])
        old = self._plan_at(grid)
        new_slopes = pchip_slopes(new_t, new_v) if self.interpolation == "pchip" else None
        new = interpolate(new_t, new_v, grid, self.interpolation, new_slopes)
        span = ramp_end - now
        weight, weight_rate = self._weight((grid - now) / span, (grid - max(old_end, now)) / span)
        values = (1 - weight)[:, None] * old + weight[:, None] * new
        slopes = None
        if self.interpolation == "pchip":
            # Hermite tangents from the blend's exact velocity, not refitted from its samples: the plan
            # then leaves `now` at the velocity the old one had and keeps the blend's own shape between
            # grid points (a refit bent it where grid points crowd, right after the splice).
            old_rate = self._plan_at(grid, derivative=True)
            new_rate = interpolate(new_t, new_v, grid, "pchip", new_slopes, derivative=True)
            slopes = ((1 - weight)[:, None] * old_rate + weight[:, None] * new_rate
                      + (weight_rate / span)[:, None] * (new - old))
        self._set(grid, values, slopes)
        self.chunk_stamp = obs_stamp
        return dropped

    def _weight(self, s: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The new chunk's weight over the blend and its rate (per unit of ``s``), from ``s`` (0 at the
        splice, 1 where the ramp ends) and ``tail`` (the same from where the old plan ends)."""
        ramp, rate = self._ramp(s)
        if self.blend != "average":
            return ramp, rate
        # Weight ramps to average_weight, and once the old chunk has run out ramps on to 1.
        tail_ramp, tail_rate = self._ramp(tail)
        w = self.average_weight
        return ramp * w + tail_ramp * (1 - w), rate * w + tail_rate * (1 - w)

    def _ramp(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The new chunk's weight over the blend, 0 -> 1, and its rate. pchip: smoothstep, whose slope is
        0 at both ends, so the splice keeps the velocity the arm had (linear: a kink of gap / ramp time
        at each end)."""
        inside = (s > 0) & (s < 1)
        s = np.clip(s, 0.0, 1.0)
        if self.interpolation == "pchip":
            return s * s * (3 - 2 * s), np.where(inside, 6 * s * (1 - s), 0.0)
        return s, inside.astype(np.float64)


def slow_down(chunk: np.ndarray, step_period: float, max_velocity: np.ndarray) -> tuple[np.ndarray, float]:
    """Time-scale a chunk whose steps need more than ``max_velocity`` (per dimension) instead of
    refusing it: each segment gets the time its fastest joint needs, and the path (unchanged) is
    resampled onto the ``step_period`` grid, so the result has more rows. Returns (chunk, factor)
    with factor = new duration / old duration (1.0: already feasible, returned as is)."""
    chunk = np.asarray(chunk, np.float64)
    vmax = np.asarray(max_velocity, np.float64)
    if len(chunk) < 2:
        return chunk, 1.0
    needed = np.max(np.abs(np.diff(chunk, axis=0)) / vmax, axis=1)    # seconds per segment
    durations = np.maximum(step_period, needed)
    if np.all(durations <= step_period * (1 + 1e-9)):
        return chunk, 1.0
    knots = np.concatenate([[0.0], np.cumsum(durations)])
    grid = np.arange(0.0, knots[-1] + 1e-9, step_period)
    if grid[-1] < knots[-1] - 1e-9:
        grid = np.append(grid, knots[-1])   # keep the chunk's end point (last segment slower still)
    return interpolate(knots, chunk, grid), knots[-1] / (step_period * (len(chunk) - 1))
