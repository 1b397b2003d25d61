"""The nodes connected to this replica: sockets, frame auth, heartbeats, slots."""

from infernet.control.nodes.auth import check_signed
from infernet.control.nodes.sessions import CONNECT_PATH, NodeConn, NodeSessions

__all__ = ["CONNECT_PATH", "NodeConn", "NodeSessions", "check_signed"]
