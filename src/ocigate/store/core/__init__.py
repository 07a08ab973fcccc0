"""The registry logic written once over the ports (``store.ports``): every backend runs it."""
