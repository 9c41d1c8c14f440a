"""QoS profiles shared by the nodes and the tools that talk to them."""

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

# Latched: the last message (instruction, success, safety status) also reaches subscribers that join later.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
