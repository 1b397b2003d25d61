"""The bus between node sessions and job drivers (see `base`)."""

from infernet.control.bus.base import (
    HEARTBEAT_LOST,
    Bus,
    Cancel,
    Dispatch,
    FleetDelta,
    JobFrame,
    NodeGone,
    NodeInfo,
    NodeLoad,
    NodeLost,
    NodeSeen,
    NodeSide,
    Release,
    Reserve,
    ToJob,
    ToNode,
)
from infernet.control.bus.local import LocalBus

__all__ = [
    "HEARTBEAT_LOST",
    "Bus", "Cancel", "Dispatch", "FleetDelta", "JobFrame", "LocalBus", "NodeGone", "NodeInfo", "NodeLoad",
    "NodeLost", "NodeSeen", "NodeSide", "Release", "Reserve", "ToJob", "ToNode",
]
