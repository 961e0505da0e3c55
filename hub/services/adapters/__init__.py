"""The hub's side of adapters: connections, the runtime that builds an adapter for a call,
operations followed to a terminal state, inbound notifications and the operator's queue."""
