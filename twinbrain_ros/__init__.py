"""twinbrain_ros: the TwinBrainVLA vision-language-action model on ROS 2 robot arms.

Layers (imports only go downward):
    model/    pure torch + transformers (no ROS)
    runtime/  synchronizer, chunk executor, safety limiter, image conversion (pure numpy, no ROS)
    nodes/    thin rclpy adapters
    sim/, bench/, cli  tools
"""

__version__ = "0.1.0"
