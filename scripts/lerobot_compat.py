"""Runs lerobot's own tools on datasets this project wrote; run with the Python of a separate venv
that has lerobot (it cannot share this project's: it pins an older torch):

    python3 -m venv ~/lerobot-venv && ~/lerobot-venv/bin/pip install lerobot==0.4.4
    apt-get install ffmpeg      # lerobot's default video decoder (torchcodec) loads the system FFmpeg
    make lerobot-compat LEROBOT_PY=~/lerobot-venv/bin/python

``make lerobot-compat`` first writes the datasets with this project's tools (a sim recording, a
rosbag2 import with jittered and dropped camera frames) and passes their folders here. Per dataset:
LeRobotDataset loads and decodes every frame (lerobot's timestamp check included) with 1 s action
chunks through delta_timestamps; lerobot-edit-dataset delete / split / remove_feature /
modify_tasks and merge produce datasets that load; lerobot-train runs with default settings
(act without its downloaded ImageNet weights, 2 steps on CPU); lerobot-dataset-viz saves an
.rrd. The outputs of the edits are written under OUT for this project's ``twinbrain-record check``
to read back. Prints one JSON line.
"""

import json
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

BIN = Path(sys.executable).parent


def _load(root: Path, repo_id: str):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    fps = json.loads((root / "meta" / "info.json").read_text())["fps"]
    ds = LeRobotDataset(repo_id, root=root, delta_timestamps={"action": [k / fps for k in range(fps)]})
    for i in range(len(ds)):      # every frame: decoding by timestamp, tolerance check included
        item = ds[i]
    assert item["action"].shape[0] == fps
    return ds


def _run(args: list) -> None:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-1500:])


class Tools:
    """lerobot's tools on one dataset; each method raises when the tool fails."""

    def __init__(self, path: Path, out: Path):
        self.path, self.name, self.edits = path, path.name, out / path.name
        shutil.rmtree(self.edits, ignore_errors=True)
        self.ds = None

    def load_all_frames(self):
        self.ds = _load(self.path, f"local/{self.name}")

    def delete_episodes(self):
        from lerobot.datasets.dataset_tools import delete_episodes
        out = delete_episodes(self.ds, [0], output_dir=self.edits / "deleted", repo_id="local/deleted")
        _load(out.root, "local/deleted")

    def split(self):
        from lerobot.datasets.dataset_tools import split_dataset
        n = self.ds.meta.total_episodes
        for part in split_dataset(self.ds, {"train": list(range(n - 1)), "val": [n - 1]},
                                  output_dir=self.edits / "split").values():
            _load(part.root, part.repo_id)

    def merge(self):
        from lerobot.datasets.dataset_tools import merge_datasets
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        again = LeRobotDataset(f"local/{self.name}", root=self.path)
        _load(merge_datasets([self.ds, again], "local/merged", output_dir=self.edits / "merged").root, "local/merged")

    def remove_feature(self):
        from lerobot.datasets.dataset_tools import remove_feature
        out = remove_feature(self.ds, self.ds.meta.camera_keys[-1:], output_dir=self.edits / "removed",
                             repo_id="local/removed")
        _load(out.root, "local/removed")

    def modify_tasks(self):
        from lerobot.datasets.dataset_tools import modify_tasks
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        copy = self.edits / "modified"      # modify_tasks works in place
        shutil.copytree(self.path, copy)
        modify_tasks(LeRobotDataset("local/modified", root=copy), new_task="touch the red cube")
        _load(copy, "local/modified")

    def edit_dataset_cli(self):
        """The command line users run, not only the functions behind it."""
        source = self.edits / "cli_source"     # the CLI writes its output inside --root: work on a copy
        shutil.copytree(self.path, source)
        _run([BIN / "lerobot-edit-dataset", "--repo_id", f"local/{self.name}", "--root", source, "--new_repo_id",
              "cli_deleted", "--operation.type", "delete_episodes", "--operation.episode_indices", "[0]"])
        _load(source / "cli_deleted", "local/cli_deleted")

    def train_defaults(self):
        # no download here: ACT's default ImageNet backbone weights come from the web
        _run([BIN / "lerobot-train", f"--dataset.repo_id=local/{self.name}", f"--dataset.root={self.path}",
              "--policy.type=act", "--policy.device=cpu", "--policy.pretrained_backbone_weights=null",
              "--policy.push_to_hub=false", "--steps=2", "--batch_size=2", "--num_workers=0",
              "--save_checkpoint=false", "--wandb.enable=false", f"--output_dir={self.edits / 'train'}"])

    def dataset_viz(self):
        _run([BIN / "lerobot-dataset-viz", f"--repo-id=local/{self.name}", f"--root={self.path}", "--episode-index=0",
              "--save=1", f"--output-dir={self.edits / 'viz'}", "--num-workers=0"])
        if not list((self.edits / "viz").glob("*.rrd")):
            raise RuntimeError("no .rrd written")


STEPS = ("load_all_frames", "delete_episodes", "split", "merge", "remove_feature", "modify_tasks",
         "edit_dataset_cli", "train_defaults", "dataset_viz")


def main(out: str, datasets: list[str]) -> None:
    import lerobot

    results = {"lerobot": getattr(lerobot, "__version__", "?"), "datasets": {}}
    for path in map(Path, datasets):
        tools, steps = Tools(path, Path(out)), {}
        results["datasets"][path.name] = steps
        for step in STEPS:
            try:
                getattr(tools, step)()
                steps[step] = "ok"
            except Exception as exc:    # report every tool's outcome, not just the first failure
                steps[step] = f"FAILED: {type(exc).__name__}: {str(exc)[-400:]}"
                traceback.print_exc()
                if tools.ds is None:
                    break
    results["ok"] = all(v == "ok" for s in results["datasets"].values() for v in s.values())
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
