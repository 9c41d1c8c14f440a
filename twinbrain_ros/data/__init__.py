"""Datasets: LeRobot v3.0 writing/reading (pure Python: pyarrow + PyAV, no ROS)."""
