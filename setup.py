"""ament_python package: builds with `colcon build` on a ROS 2 install, installs with pip elsewhere.

Python dependencies are pinned in requirements.txt only (on a robot, ROS packages come from apt and
torch/transformers from pip; see README).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "twinbrain_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    package_data={PACKAGE: ["sim/assets/*.xml"]},
    include_package_data=True,
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="twinbrain_ros maintainers",
    maintainer_email="maintainers@twinbrain-ros.org",
    description="TwinBrainVLA vision-language-action policy for ROS 2 robot arms",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            f"twinbrain-bench = {PACKAGE}.bench.__main__:main",
            f"twinbrain-demo = {PACKAGE}.demo:main",
            f"twinbrain-ros = {PACKAGE}.cli:main",
            f"twinbrain-record = {PACKAGE}.data.record_sim:main",
            f"twinbrain-train = {PACKAGE}.train.trainer:main",
            f"policy_node = {PACKAGE}.nodes.policy_node:main",
            f"safety_node = {PACKAGE}.nodes.safety_node:main",
            f"sim_arm = {PACKAGE}.nodes.sim_arm_node:main",
            f"recorder_node = {PACKAGE}.nodes.recorder_node:main",
        ],
    },
)
