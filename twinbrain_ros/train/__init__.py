"""Fine-tuning TwinBrainVLA on LeRobot v3.0 datasets (single process or accelerate)."""
