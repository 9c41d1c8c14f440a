"""Training samples from LeRobot v3.0 datasets: (camera frames, state, instruction) -> action chunk.

The chunk is the next H actions of the same episode by frame index (the dataset is sampled at a
fixed fps); steps past the episode's end are padded with its last action and masked out of the loss.
Rows flagged ``frame_repeated`` (their observation is the previous row's: no new camera frame came in
time) are no sample's observation, but their actions, which are real, stay in the chunks.
Decoded frames are cached per episode in memory (fine for the datasets a lab fine-tunes on; for
very large ones decode lazily instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.lerobot_v3 import LeRobotV3Dataset
from ..model.normalization import Normalization, RangeNormalizer, delta_actions
from ..runtime.images import resize_rgb


@dataclass
class Sample:
    images: list            # one HxWx3 uint8 frame per camera, in camera order
    state: np.ndarray       # (state_dim,) robot units
    instruction: str
    actions: np.ndarray     # (H, action_dim) robot units
    action_mask: np.ndarray  # (H,) 1 = real step, 0 = padding past the episode end
    goal: np.ndarray | None = None   # (state_dim,) the state the episode ends in (the goal target)


class ChunkSamples:
    def __init__(self, dataset: LeRobotV3Dataset, chunk_length: int, camera_names: list[str],
                 episodes: list[int] | None = None, image_size: tuple[int, int] | None = None):
        """``image_size`` (h, w): decoded frames are kept at the size the model sees, resized the way
        the policy resizes camera frames (INTER_AREA), instead of at the recorded size."""
        self.ds, self.h, self.image_size = dataset, chunk_length, image_size
        missing = [c for c in camera_names if c not in dataset.cameras]
        if missing:
            raise ValueError(f"{dataset.root}: the model's cameras {missing} are not in the dataset, whose cameras "
                             f"are {sorted(dataset.cameras)} ({dataset.camera_keys})")
        self.keys = [dataset.cameras[c] for c in camera_names]
        chosen = set(range(len(dataset.episodes))) if episodes is None else set(episodes)
        self.episodes = [ep for ep in dataset.episodes if ep["episode_index"] in chosen]
        self._data = {ep["episode_index"]: dataset.episode_data(ep) for ep in self.episodes}
        self._frames: dict[int, list[np.ndarray]] = {}
        self.index = [(e, t) for e, data in self._data.items() for t in np.flatnonzero(~_repeated(data)).tolist()]
        self.repeated_rows = sum(int(_repeated(d).sum()) for d in self._data.values())

    def __len__(self) -> int:
        return len(self.index)

    def early_indices(self, frames: int) -> np.ndarray:
        """Sample indices of the first ``frames`` observations of every episode: where the arm still stands
        at its start, so only the instruction tells which goal an episode has (later the state and the
        images of a moving arm give it away)."""
        first: dict[int, int] = {}
        chosen = []
        for i, (episode, _) in enumerate(self.index):
            first[episode] = first.get(episode, 0) + 1
            if first[episode] <= frames:
                chosen.append(i)
        return np.asarray(chosen, dtype=np.int64)

    def _episode_frames(self, episode: int) -> list[np.ndarray]:
        if episode not in self._frames:
            ep = next(e for e in self.episodes if e["episode_index"] == episode)
            self._frames[episode] = [self._resized(self.ds.episode_frames(ep, key)) for key in self.keys]
        return self._frames[episode]

    def _resized(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        if self.image_size is None:
            return frames
        return [resize_rgb(f, self.image_size) for f in frames]

    def __getitem__(self, i: int) -> Sample:
        episode, t = self.index[i]
        data = self._data[episode]
        actions = data["action"]
        n = len(actions)
        steps = np.arange(t, t + self.h)
        mask = (steps < n).astype(np.float32)
        chunk = actions[np.minimum(steps, n - 1)]
        task = self.ds.tasks[int(data["task_index"][t])]
        return Sample([frames[t] for frames in self._episode_frames(episode)], data["observation.state"][t], task,
                      chunk.astype(np.float32), mask, np.asarray(data["observation.state"][-1], np.float32))

    def action_range(self, mask) -> RangeNormalizer:
        """q01/q99 of every real (unpadded) chunk row in the model's action space (``delta_actions``)."""
        rows = []
        for episode, t in self.index:
            data = self._data[episode]
            rows.append(delta_actions(data["action"][t:t + self.h], data["observation.state"][t], mask))
        return RangeNormalizer.from_data(np.concatenate(rows))


def _repeated(data: dict) -> np.ndarray:
    """Rows whose observation repeats the previous row's (datasets without the flag: none)."""
    flags = data.get("frame_repeated")
    return np.zeros(len(data["action"]), bool) if flags is None else np.asarray(flags, bool)


def delta_action_mask(dataset: LeRobotV3Dataset, absolute: str) -> list[bool]:
    """Which action dims become relative to the state: all but the comma-separated ``absolute`` names.
    A name matches an action name equal to it or to it plus ``.pos`` (lerobot's ``gripper.pos``).
    Each relative dim must be the same joint as the state dim at its index."""
    feats = dataset.info["features"]
    actions, states = _names(feats["action"]), _names(feats["observation.state"])
    keep = {n.strip() for n in absolute.split(",") if n.strip()}

    def named(action: str) -> str | None:
        return next((k for k in keep if action in (k, f"{k}.pos")), None)

    unknown = sorted(keep - {named(a) for a in actions})
    if unknown:
        raise ValueError(f"{dataset.root}: absolute_actions names {unknown} are not action names {actions}")
    mask = [named(name) is None for name in actions]
    wrong = [name for i, name in enumerate(actions) if mask[i] and (i >= len(states) or states[i] != name)]
    if wrong:
        raise ValueError(f"{dataset.root}: delta actions need each relative action to be the state's joint at the "
                         f"same index; {wrong} are not (state names {states})")
    return mask


def _names(feature: dict) -> list[str]:
    names = feature.get("names") or []
    if isinstance(names, dict):        # lerobot's own datasets: {"motors": [...]}
        names = next(iter(names.values()), [])
    return [str(n) for n in names]


def normalization_from_stats(dataset: LeRobotV3Dataset) -> Normalization:
    """q01/q99 of state and action from meta/stats.json (the checkpoint keeps them)."""
    import json

    path = dataset.root / "meta" / "stats.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: normalisation needs the dataset's q01/q99")
    stats = json.loads(path.read_text())
    try:
        return Normalization(RangeNormalizer(np.array(stats["observation.state"]["q01"], np.float32),
                                             np.array(stats["observation.state"]["q99"], np.float32)),
                             RangeNormalizer(np.array(stats["action"]["q01"], np.float32),
                                             np.array(stats["action"]["q99"], np.float32)))
    except KeyError as exc:
        raise ValueError(f"{path}: missing {exc} (q01/q99 of observation.state and action are required)") from None
