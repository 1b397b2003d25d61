"""What crosses the wire between nodes, the control plane and verifiers; no I/O here.

- `keys`: node and platform identities (secp256k1, npub/nsec, BIP-340 signatures);
- `auth`: signed requests (`X-Infernet-Auth`) and signed frames within a session;
- `messages`: the frozen frame types of the node socket;
- `receipts`: Compute Payment Receipts and payout records, and the money arithmetic.
"""

from infernet.protocol.auth import AuthError
from infernet.protocol.keys import Identity
from infernet.protocol.messages import PROTOCOL_VERSION, ControlFrame, NodeFrame, Usage

__all__ = ["PROTOCOL_VERSION", "AuthError", "ControlFrame", "Identity", "NodeFrame", "Usage"]
