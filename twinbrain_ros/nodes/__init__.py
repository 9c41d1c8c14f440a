"""Thin rclpy adapters, one node per file: parameters, topics, QoS, threads. Logic lives in runtime/."""
