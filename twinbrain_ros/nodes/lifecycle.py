"""What the managed nodes share: destroying the interfaces a configure created (lifecycle cleanup)."""

from __future__ import annotations

from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer


def destroy_entities(node, entities: list) -> None:
    """Destroy every subscription, publisher, service and timer in ``entities`` on ``node``; empties the list."""
    destroy = {Subscription: node.destroy_subscription, Publisher: node.destroy_publisher,
               Service: node.destroy_service, Timer: node.destroy_timer}
    for entity in entities:
        destroy[next(t for t in destroy if isinstance(entity, t))](entity)
    entities.clear()
