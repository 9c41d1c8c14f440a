"""Runtime logic between ROS and the model: pure Python/numpy, no ROS imports, unit tested hard."""
