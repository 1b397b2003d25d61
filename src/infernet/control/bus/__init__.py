"""The bus between node sessions and job drivers (see `base`)."""

from infernet.control.bus.base import (
    HEARTBEAT_LOST,
    Attach,
    Bus,
    Cancel,
    CancelJob,
    Dispatch,
    FleetDelta,
    JobFrame,
    Judged,
    NodeGone,
    NodeInfo,
    NodeLoad,
    NodeSeen,
    NodeSide,
    Relay,
    Release,
    Reserve,
    ToDriver,
    ToJob,
    ToNode,
    Verdict,
)
from infernet.control.bus.local import LocalBus

__all__ = [
    "HEARTBEAT_LOST", "Attach", "Bus", "Cancel", "CancelJob", "Dispatch", "FleetDelta", "JobFrame", "Judged", "LocalBus",
    "NodeGone", "NodeInfo", "NodeLoad", "NodeSeen", "NodeSide", "Relay", "Release", "Reserve", "ToDriver", "ToJob", "ToNode",
    "Verdict",
]
