"""The nodes connected to this replica: sockets, frame auth, heartbeats, slots (`sessions`);
signed requests (`auth`); what a node's claims are worth (`claims`)."""
