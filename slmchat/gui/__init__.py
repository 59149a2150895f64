"""The Qt layer: presents core objects and relays the user's intent to them."""
